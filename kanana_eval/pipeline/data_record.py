"""The manifest's `data` entry of a benchmark: where its items came from, and their fingerprint.

`compare` refuses to pair runs whose fingerprints differ, so the fingerprint covers exactly
the data read: the mirror folder, the hub splits lm-eval loaded, or a tool's own release file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from kanana_eval.config.protocol import BenchmarkSpec
from kanana_eval.data.dataset_fingerprint import dataset_fingerprint
from kanana_eval.data.dataset_fingerprint import hub_fingerprint as dataset_hub_fingerprint
from kanana_eval.data.mirror.record import mirror_info
from kanana_eval.results.records import DataRecord
from kanana_eval.scoring.base import Scorer
from kanana_eval.tasks.lm_eval_bridge import BuiltTask


def data_record(spec: BenchmarkSpec, scorer: Scorer, tasks: list[BuiltTask],
                data_dir: Path | None) -> DataRecord:
    dataset_id = spec.task.dataset_id
    if data_dir is not None:
        info = mirror_info(data_dir, dataset_id) or {}
        return DataRecord(source="mirror", dataset_id=dataset_id, path=str(data_dir / dataset_id),
                          fingerprint=dataset_fingerprint(data_dir / dataset_id),
                          revision=info.get("revision"),
                          derived_fewshot=bool(info.get("derived_fewshot", False)))
    released = scorer.release_data(spec)
    if released is not None:  # e.g. evalplus downloads its own release file
        return released
    prints = []
    for t in tasks:  # lm-eval keeps a DatasetDict: fingerprint every split it loaded
        dataset = t.task.dataset
        splits = dataset.items() if hasattr(dataset, "items") else [("", dataset)]
        prints.append({split: dataset_hub_fingerprint(ds) for split, ds in splits})
    digest = hashlib.sha256(json.dumps(prints, sort_keys=True, default=str).encode()).hexdigest()
    revisions = {fp.get("revision") for p in prints for fp in p.values()}
    return DataRecord(source="hub", dataset_id=dataset_id, path=None,
                      fingerprint=f"sha256:{digest}",
                      revision=revisions.pop() if len(revisions) == 1 else None,
                      derived_fewshot=False, hub_datasets=prints)
