// Command dashboard prints the Grafana dashboard of the Gradients operator as JSON.
//
// The dashboard is built with Grafana's foundation SDK (Apache-2.0; its types are generated from
// Grafana's own schemas), then decoded again strictly with every panel plugin's schema registered
// and validated, so a field Grafana's schema does not know fails here rather than in Grafana.
// scripts/generate writes the output to charts/gradients/dashboards/gradients-operator.json and
// `scripts/generate --check` fails when the committed file differs. Every query must name only
// metrics the operator or the GPU agent export (charts/test checks it) and return data from a
// real Prometheus after the e2e tournament (tests/operator_e2e.rs).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/bargauge"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// Every panel reads the Prometheus the user picks in the `datasource` variable.
var datasource = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// query is one PromQL target; legend "" leaves Grafana's default (the labels).
func query(refID, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().RefId(refID).Expr(expr).Datasource(datasource)
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// panel is what every panel builder has (each of its own type).
type panel[B any] interface {
	Unit(unit string) B
	Description(description string) B
}

// finish sets a panel's unit and description, when given.
func finish[B panel[B]](p B, description, unit string) B {
	if unit != "" {
		p = p.Unit(unit)
	}
	if description != "" {
		p = p.Description(description)
	}
	return p
}

// lastValue reduces each series to its latest value (stat and bar gauge panels).
func lastValue() *common.ReduceDataOptionsBuilder {
	return common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Values(false)
}

// series is a time series panel of one query.
func series(title, description, expr, legend, unit string, w, h uint32) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Datasource(datasource).
		WithTarget(query("A", expr, legend)).Span(w).Height(h).
		Legend(common.NewVizLegendOptionsBuilder().ShowLegend(true).DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom))
	return finish(p, description, unit)
}

// bars is a horizontal bar gauge of the latest value of each series.
func bars(title, description, expr, legend, unit string, w, h uint32) *bargauge.PanelBuilder {
	p := bargauge.NewPanelBuilder().Title(title).Datasource(datasource).
		WithTarget(query("A", expr, legend).Instant()).Span(w).Height(h).
		Orientation(common.VizOrientationHorizontal).DisplayMode(common.BarGaugeDisplayModeGradient).
		ReduceOptions(lastValue())
	return finish(p, description, unit)
}

// single is a stat panel of one number.
func single(title, description, expr, unit string, w uint32) *stat.PanelBuilder {
	p := stat.NewPanelBuilder().Title(title).Datasource(datasource).
		WithTarget(query("A", expr, "")).Span(w).Height(4).GraphMode(common.BigValueGraphModeNone).
		Orientation(common.VizOrientationAuto).
		ReduceOptions(lastValue())
	return finish(p, description, unit)
}

func build() (dashboard.Dashboard, error) {
	d := dashboard.NewDashboardBuilder("Gradients operator").
		Uid("gradients-operator").
		Description("Tournaments run by the Gradients operator: tasks, miners and weights, trainings, evaluations, GPUs, and the operator's own health.").
		Tags([]string{"gradients"}).
		Time("now-6h", "now").
		Refresh("30s").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Prometheus").Type("prometheus"))

	d = d.WithRow(dashboard.NewRowBuilder("Tournaments")).
		WithPanel(single("Weights in the sinks", "1 when every Leaderboard's sinks hold its current weights.",
			"min(gradients_leaderboard_weights_in_sync)", "", 4)).
		WithPanel(single("Since the last weight push", "",
			"time() - max(gradients_leaderboard_weights_pushed_timestamp_seconds)", units.Seconds, 4)).
		WithPanel(single("Since the newest result", "Since the newest complete Evaluation finished.",
			"time() - max(gradients_leaderboard_newest_record_timestamp_seconds)", units.Seconds, 4)).
		WithPanel(single("Tasks succeeded (24 h)", "",
			`sum(increase(gradients_tasks_finished_total{result="Succeeded"}[24h]))`, "", 4)).
		WithPanel(single("Tasks failed (24 h)", "",
			`sum(increase(gradients_tasks_finished_total{result="Failed"}[24h]))`, "", 4)).
		WithPanel(single("Miners with a standing", "On every Leaderboard together.",
			"sum(gradients_leaderboard_miners)", "", 4)).
		WithPanel(series("Tasks by phase", "Tasks in each phase over time.",
			"sum by (phase) (gradients_tasks)", "{{phase}}", "", 12, 8).
			Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).FillOpacity(30)).
		WithPanel(statetimeline.NewPanelBuilder().Title("Task timeline").
			Description("When each phase held tasks (darker: more): one task at a time reads as its timeline.").
			Datasource(datasource).WithTarget(query("A", "sum by (phase) (gradients_tasks)", "{{phase}}")).
			Span(12).Height(8).ShowValue(common.VisibilityModeNever).
			Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).
				Steps([]dashboard.Threshold{{Color: "transparent"}, {Value: cog.ToPtr(1.0), Color: "blue"},
					{Value: cog.ToPtr(5.0), Color: "dark-blue"}}))).
		WithPanel(series("Time in each phase (mean, 6 h)",
			"How long Tasks stayed in each phase they left: the per-task timeline, averaged.",
			"sum by (phase) (increase(gradients_task_phase_duration_seconds_sum[6h])) / sum by (phase) (increase(gradients_task_phase_duration_seconds_count[6h]))",
			"{{phase}}", units.Seconds, 12, 8)).
		WithPanel(bars("Time in each phase (p90, 24 h)",
			"90th percentile of the time Tasks stayed in each phase they left (bucket resolution).",
			"histogram_quantile(0.9, sum by (phase, le) (increase(gradients_task_phase_duration_seconds_bucket[24h])))",
			"{{phase}}", units.Seconds, 12, 8)).
		WithPanel(series("Workload run time (mean, 6 h)", "Preparation, training, seal and evaluation Jobs, by result.",
			"sum by (kind, result) (increase(gradients_workload_duration_seconds_sum[6h])) / sum by (kind, result) (increase(gradients_workload_duration_seconds_count[6h]))",
			"{{kind}} {{result}}", units.Seconds, 24, 8))

	d = d.WithRow(dashboard.NewRowBuilder("Miners and weights")).
		WithPanel(series("Miner weights", "Each miner's weight on each Leaderboard: the history its status does not keep.",
			"gradients_leaderboard_miner_weight_ratio", "{{leaderboard}} {{miner}}", units.PercentUnit, 12, 8)).
		WithPanel(bars("Standings (quality)", "Windowed adjusted scores, best first.",
			"sort_desc(gradients_leaderboard_miner_quality)", "{{leaderboard}} {{miner}}", "", 12, 8)).
		WithPanel(series("Miner quality", "Each miner's quality over time.",
			"gradients_leaderboard_miner_quality", "{{leaderboard}} {{miner}}", "", 12, 8)).
		WithPanel(bars("Tasks in the window", "Tasks of each miner inside the Leaderboard's longest window.",
			"sort_desc(gradients_leaderboard_miner_tasks)", "{{leaderboard}} {{miner}}", "", 12, 8)).
		WithPanel(bars("Submissions by miner and phase", "MinerSubmissions not archived yet (an ended Task's are, once its Jobs go), by miner and phase.",
			"sum by (miner, phase) (gradients_miner_submissions)", "{{miner}} {{phase}}", "", 24, 8))

	d = d.WithRow(dashboard.NewRowBuilder("Training (each miner's latest)")).
		WithPanel(series("Training throughput", "Tokens per second over the trainer's own wall time.",
			"gradients_trainer_tokens_per_second", "{{miner}}", "", 8, 8)).
		WithPanel(series("Final train loss", "As the trainer reported it (telemetry, never scored).",
			"gradients_trainer_final_train_loss", "{{miner}}", "", 8, 8)).
		WithPanel(series("Optimiser steps", "", "gradients_trainer_steps", "{{miner}}", "", 8, 8)).
		WithPanel(series("Trainer wall time", "From the trainer Job's start to its completion.",
			"gradients_trainer_wall_seconds", "{{miner}}", units.Seconds, 8, 8)).
		WithPanel(series("GPU-seconds per training", "Wall time × the trainer Job's GPUs.",
			"gradients_trainer_gpu_seconds", "{{miner}}", units.Seconds, 8, 8)).
		WithPanel(series("Tokens per training", "", "gradients_trainer_tokens", "{{miner}}", "", 8, 8))

	d = d.WithRow(dashboard.NewRowBuilder("Evaluation (each miner's latest)")).
		WithPanel(series("Weighted loss", "The loss the ranking uses, from the miner's latest complete Evaluation.",
			`gradients_evaluation_loss{loss="weighted"}`, "{{miner}}", "", 12, 8)).
		WithPanel(series("Test and synthetic loss", "",
			`gradients_evaluation_loss{loss=~"test|synth"}`, "{{miner}} {{loss}}", "", 12, 8)).
		WithPanel(bars("Rank", "The miner's rank in its latest complete Evaluation (1 is first).",
			"sort(gradients_evaluation_rank)", "{{miner}}", "", 12, 8)).
		WithPanel(bars("Evaluation results by status", "Results in the kept Evaluations.",
			"sum by (status) (gradients_evaluation_results)", "{{status}}", "", 12, 8))

	d = d.WithRow(dashboard.NewRowBuilder("GPUs (from the GPU agent)")).
		WithPanel(series("GPU utilisation by miner", "Mean over the miner's GPUs; an empty miner is a GPU no tournament pod uses.",
			"avg by (namespace, miner) (gradients_gpu_utilization_ratio)", "{{namespace}} {{miner}}", units.PercentUnit, 12, 8)).
		WithPanel(series("GPU memory by miner", "",
			"sum by (namespace, miner) (gradients_gpu_memory_used_bytes)", "{{namespace}} {{miner}}", units.BytesIEC, 12, 8)).
		WithPanel(series("GPU memory in use by node", "",
			"sum by (node) (gradients_gpu_memory_used_bytes) / sum by (node) (gradients_gpu_memory_total_bytes)",
			"{{node}}", units.PercentUnit, 8, 8)).
		WithPanel(series("GPU power by node", "", "sum by (node) (gradients_gpu_power_watts)", "{{node}}", units.Watt, 8, 8)).
		WithPanel(series("Hottest GPU by node", "", "max by (node) (gradients_gpu_temperature_celsius)", "{{node}}", units.Celsius, 8, 8))

	d = d.WithRow(dashboard.NewRowBuilder("Operator health")).
		WithPanel(single("Leader", "1 while a replica holds the leader Lease.", "max(gradients_leader)", "", 4)).
		WithPanel(bars("Tasks by phase", "", "sum by (phase) (gradients_tasks)", "{{phase}}", "", 10, 8)).
		WithPanel(bars("Submissions by phase", "", "sum by (phase) (gradients_submissions)", "{{phase}}", "", 10, 8)).
		WithPanel(series("Reconciles per second", "", "sum by (controller) (rate(gradients_reconcile_total[5m]))",
			"{{controller}}", units.OpsPerSecond, 12, 8)).
		WithPanel(series("Reconcile errors by category", "Zero for a controller without errors.",
			"sum by (controller, category) (rate(gradients_reconcile_errors_total[5m])) or sum by (controller) (rate(gradients_reconcile_total[5m])) * 0",
			"{{controller}} {{category}}", units.OpsPerSecond, 12, 8)).
		WithPanel(series("Reconcile duration p95", "",
			"histogram_quantile(0.95, sum by (controller, le) (rate(gradients_reconcile_duration_seconds_bucket[5m])))",
			"{{controller}}", units.Seconds, 12, 8)).
		WithPanel(series("Weight pushes (1 h)", "Pushes to the sinks and failed pushes.",
			"sum by (sink, result) (increase(gradients_weight_pushes_total[1h]))", "{{sink}} {{result}}", "", 12, 8)).
		WithPanel(series("Chain sink decisions (1 h)", "What the chain sink did while a push was due, by outcome.",
			"sum by (outcome) (increase(gradients_chain_push_total[1h]))", "{{outcome}}", "", 12, 8))

	built, err := d.Build()
	if err != nil {
		return built, err
	}
	// Stable panel ids in order (Grafana's links and "view panel" need them).
	id := uint32(0)
	for _, p := range built.Panels {
		id++
		if p.Panel != nil {
			p.Panel.Id = cog.ToPtr(id)
		} else if p.RowPanel != nil {
			p.RowPanel.Id = id
		}
	}
	return built, nil
}

// check decodes a dashboard strictly against the SDK's schema types, every panel's options
// and field config by its plugin's schema: an unknown field, a missing required one or a
// mistyped value is an error that names its path.
func check(raw []byte) error {
	plugins.RegisterDefaultPlugins()
	var decoded dashboard.Dashboard
	if err := decoded.UnmarshalJSONStrict(raw); failed(err) {
		return fmt.Errorf("not a dashboard by Grafana's schema:\n%w", err)
	}
	if err := decoded.Validate(); failed(err) {
		return fmt.Errorf("the dashboard does not validate:\n%w", err)
	}
	return nil
}

// failed: the SDK returns its error list typed, so an empty list is a non-nil error.
func failed(err error) bool {
	var list cog.BuildErrors
	if errors.As(err, &list) {
		return len(list) > 0
	}
	return err != nil
}

// Usage: `dashboard` prints the dashboard; `dashboard --check FILE` checks a dashboard file.
func main() {
	var err error
	if len(os.Args) == 3 && os.Args[1] == "--check" {
		var raw []byte
		if raw, err = os.ReadFile(os.Args[2]); err == nil {
			err = check(raw)
		}
	} else if len(os.Args) == 1 {
		var d dashboard.Dashboard
		if d, err = build(); err == nil {
			var out []byte
			if out, err = json.MarshalIndent(d, "", "  "); err == nil {
				if err = check(out); err == nil {
					_, err = os.Stdout.Write(append(out, '\n'))
				}
			}
		}
	} else {
		err = errors.New("usage: dashboard [--check FILE]")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashboard:", err)
		os.Exit(1)
	}
}
