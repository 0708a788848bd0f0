"""`make bench` (`python -m tools.bench`): our wall time against plain lm-eval, against the
compute bound, and batched generation.

A speed claim is only meaningful next to a reference measured on the same machine in the same
process, so one invocation measures, on the same loaded weights and the same batch size:

* log-likelihood (5-shot MMLU on fixed offline subjects), three ways:
  - plain: `lm_eval.simple_evaluate` on lm-eval's own HFLM and lm-eval's own task YAML;
  - ours, prefix reuse: kanana-eval's runner path (`pipeline.collect.collect_items`) on the
    engine of `engine.build.build_lm` (FastHFLM) with `prefix_cache` on;
  - ours, no reuse: the same loaded FastHFLM with `prefix_cache` switched off;
  and two compute bounds: the tokens plain lm-eval fed (counted by a forward pre-hook) divided by
  the raw full-logit forward rate, and the tokens the reuse path needs (every distinct token
  prefix once per subject: the 5-shot prefix once, each question once) divided by the raw forward
  rate with only the last position's logits (all the reuse path needs), both measured here;
* generation (HumanEval prompts, the protocol's stop strings and token limit): ours batched vs
  ours at batch 1, with plain lm-eval at batch 1 as the reference; outputs must be byte-identical.

It also prints the peak resident memory of every phase and a projection of the full base
protocol's wall time from the measured rates, and appends the whole report as one JSON line to
results/bench/bench.jsonl so changes over time can be seen. Model and data loading are excluded
from every timing; every model gets a warm-up forward first. Answers that differ between the
three log-likelihood sides, or generated texts that differ between the three generation sides,
exit 1.

The machine may be shared: the log-likelihood sides alternate subject by subject, every timed
piece records the CPU other processes used meanwhile (/proc/stat), and a piece timed under such
load is run again, its fastest attempt counting (`measure.RetryPolicy`).

Modules, in the order a run uses them:
  config       what can be asked (BenchConfig, defaults, targets) and BenchError
  workloads    the work: 5-shot MMLU log-likelihood and HumanEval generation
  probes       what a timed piece reads: tokens fed, peak memory, other processes' CPU
  measure      timing the sides against each other and against the compute bound
  projection   the full base protocol's wall time, projected from the measured rates
  format       the printed report
  run          one whole bench: load, measure, project; the report as plain data
  cli          the command line (`__main__` calls it)
"""
