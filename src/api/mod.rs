//! Types shared by the task file and the custom resources.

pub mod task;
