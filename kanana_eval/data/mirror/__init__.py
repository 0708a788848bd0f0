"""A local, offline mirror of the datasets the benchmarks read, in the hub's own layout.

`--data-dir DIR` makes every task load `datasets.load_dataset(path=str(DIR/ID), name=config,
split=...)`, the same call lm-eval makes with the hub id, so DIR/ID must look exactly like
`huggingface-cli download --repo-type dataset ID --local-dir DIR/ID`: the same data files at the
same relative paths and a README.md whose YAML `configs:` block maps config names to
`data_files` (and whose `dataset_info:` gives the features). Datasets that are not hub datasets
(FastChat's and KoMT-Bench's judge files, evalplus' release file) keep their own file trees.

This package is the machinery only: the plan types (`plan`), how a source is described
(`provenance`), writing the shards, cards and copied files (`writer`), the record
`DIR/kanana_mirror.json` (`record`) and the build loop (`build`). What each dataset holds, where
its source is and what differs from the hub copy is its benchmark folder's business:
`kanana_eval/tasks/<name>/data.py` (the plan) and `card.md` (the prose). The caller passes the
plans in (`kanana_eval.tasks.catalog.data_plans()`), so this layer never imports the tasks layer.

Writes are atomic per dataset: each folder is built in a temporary folder inside DIR and renamed
into place; the record is rewritten atomically after each dataset.

Where unsure (the hub cannot be reached from here; facts come from copies of the dataset cards
found with the search tool): the exact shard file names (`-00000-of-00001` is what the hub's
Parquet conversion writes for these sizes). Loading code only relies on the README patterns,
which match either way.
"""
