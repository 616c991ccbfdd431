//! How many GPUs a trainer gets (codebase notes §2, `gpu_requirements.py`).

use crate::mechanism::TaskType;

/// GPUs for training: the parameter count is scaled for methods that hold more than one copy
/// of the model (×3 for DPO: policy, reference and optimiser state; ×2 for GRPO), then binned
/// ≤4B → 1, ≤12B → 2, ≤40B → 4, else 8. Image models always get one.
pub fn training_gpus(task_type: TaskType, params_b: f64) -> u32 {
    let scale = match task_type {
        TaskType::Dpo => 3.0,
        TaskType::Grpo => 2.0,
        TaskType::InstructText => 1.0,
        TaskType::Image => return 1,
    };
    bin(params_b * scale)
}

/// GPUs for evaluation: one copy of the model, binned the same way.
pub fn evaluation_gpus(task_type: TaskType, params_b: f64) -> u32 {
    if task_type == TaskType::Image { 1 } else { bin(params_b) }
}

fn bin(params_b: f64) -> u32 {
    match params_b {
        p if p <= 4.0 => 1,
        p if p <= 12.0 => 2,
        p if p <= 40.0 => 4,
        _ => 8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskType::*;

    #[test]
    fn gpu_counts_by_hand() {
        let cases = [
            (InstructText, 0.5, 1),
            (InstructText, 4.0, 1),
            (InstructText, 4.1, 2),
            (InstructText, 12.0, 2),
            (InstructText, 14.0, 4),
            (InstructText, 40.0, 4),
            (InstructText, 70.0, 8),
            (Dpo, 1.5, 2),   // 4.5B effective
            (Dpo, 4.0, 2),   // 12B
            (Dpo, 8.0, 4),   // 24B
            (Dpo, 14.0, 8),  // 42B
            (Grpo, 2.0, 1),  // 4B
            (Grpo, 3.0, 2),  // 6B
            (Grpo, 7.0, 4),  // 14B
            (Grpo, 21.0, 8), // 42B
            (Image, 12.0, 1),
        ];
        for (task_type, params, gpus) in cases {
            assert_eq!(training_gpus(task_type, params), gpus, "{task_type} {params}B");
        }
        assert_eq!(evaluation_gpus(Dpo, 8.0), 2);
    }
}
