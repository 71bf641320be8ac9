"""Running a model package: one onnxruntime session set-up, and the one rule from probabilities to labels.

Every caller goes through here: the export stage's parity check, the server, monitoring's reference and
retraining judge, batch scoring. So a probability means the same label everywhere: binary models report
P(positive) and say positive at the contract's threshold (0.5 when none was tuned); multi-class models
say the most likely class and report its probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from modelpkg.codecs import DEFAULT_MAX_BATCH, Codec, codec_for
from modelpkg.contract import PREDICTED_LABEL, PROBABILITY, ModelContract, class_probability_column
from modelpkg.package import PackageFiles

EMBEDDING = "embedding"  # the answer key that carries a row's embedding to the prediction log
ORT_LOG_ERRORS_ONLY = 3  # onnxruntime severity: 0 verbose ... 3 error, 4 fatal
DEFAULT_THRESHOLD = 0.5  # binary models without a tuned threshold: the more likely class


@dataclass(frozen=True)
class SessionSettings:
    """0 threads = onnxruntime's choice (all cores). The server runs small models on one thread each,
    without spinning: request concurrency keeps the cores busy, and spinning would steal the event loop's CPU."""

    intra_op_threads: int = 0
    inter_op_threads: int = 0
    allow_spinning: bool = True


def open_session(model: str | Path | bytes, settings: SessionSettings = SessionSettings()) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_op_threads
    options.inter_op_num_threads = settings.inter_op_threads
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = ORT_LOG_ERRORS_ONLY  # unused-initialiser warnings are noise for readers
    if not settings.allow_spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def check_inputs(contract: ModelContract, session: ort.InferenceSession) -> None:
    """The graph must take exactly the inputs the contract describes, or every request would fail."""
    graph = {node.name for node in session.get_inputs()}
    promised = {spec.name for spec in contract.inputs}
    if graph != promised:
        raise ValueError(f"contract and ONNX graph disagree on inputs: only in contract {sorted(promised - graph)}, "
                         f"only in graph {sorted(graph - promised)}")


def class_indices(labels: Sequence[Any], classes: Sequence[str], owner: str) -> np.ndarray:
    """Label strings -> indices into `classes`; a label outside them is an error naming it and `owner` (a
    metric or a promotion judged on it would mean nothing)."""
    index = {label: i for i, label in enumerate(classes)}
    unknown = sorted({str(label) for label in labels} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown} are not classes of {owner} (classes: {list(classes)})")
    return np.array([index[str(label)] for label in labels], dtype=int)


def binary_threshold(contract: ModelContract) -> float:
    """P(positive) at or above which a binary model says positive: the tuned threshold, else 0.5."""
    return contract.threshold if contract.threshold is not None else DEFAULT_THRESHOLD


def decide(probabilities: np.ndarray, contract: ModelContract) -> tuple[np.ndarray, np.ndarray]:
    """[rows, classes] probabilities -> (class index per row, the probability reported per row)."""
    probabilities = np.asarray(probabilities)
    if len(contract.labels) == 2:
        positive = contract.positive_index
        reported = probabilities[:, positive]
        threshold = binary_threshold(contract)
        return np.where(reported >= threshold, positive, 1 - positive), reported
    chosen = probabilities.argmax(axis=1)
    return chosen, probabilities[np.arange(len(chosen)), chosen]


def answers(probabilities: np.ndarray, contract: ModelContract, *, top_k: int = 0,
            embeddings: np.ndarray | None = None) -> list[dict]:
    """One answer per row, as the API returns and the prediction log keeps it. The same rule as `decide`,
    on plain floats: this runs on every request, and for a few rows NumPy's indexing costs more than it saves.
    Multi-class answers also list the `top_k` most likely classes when top_k > 0 (binary answers never:
    their one probability says it all). With `embeddings`, each answer carries its row under `embedding`:
    the log keeps it for monitoring, the client never sees it (`public_answer`)."""
    labels = contract.labels
    if len(labels) == 2:
        positive = contract.positive_index
        threshold = binary_threshold(contract)
        yes, no = labels[positive], labels[1 - positive]
        found = [{"label": yes if p >= threshold else no, "probability": p}
                 for p in probabilities[:, positive].tolist()]
    else:
        chosen, reported = decide(probabilities, contract)
        found = [{"label": labels[i], "probability": p, "probabilities": dict(zip(labels, row))}
                 for i, p, row in zip(chosen.tolist(), reported.tolist(), probabilities.tolist())]
        if top_k > 0:
            for answer in found:
                answer["top_k"] = most_likely(answer["probabilities"], top_k)
    if embeddings is not None:
        for answer, row in zip(found, embeddings.tolist()):
            answer[EMBEDDING] = row
    return found


def public_answer(answer: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a client is answered: the logged answer less what only monitoring reads (the embedding). On
    the hot path: an answer without one is returned as it is, not copied."""
    if EMBEDDING not in answer:
        return answer
    return {key: value for key, value in answer.items() if key != EMBEDDING}


def stack_scores(parts: list[tuple[np.ndarray, np.ndarray | None]],
                 contract: ModelContract) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-chunk (probabilities, embeddings) -> whole arrays; arrays of the right width when there are no
    chunks; embeddings None for a graph without that output."""
    probabilities = (np.concatenate([p for p, _ in parts]) if parts
                     else np.zeros((0, len(contract.labels)), dtype=np.float32))
    if contract.embedding_output is None:
        return probabilities, None
    return probabilities, (np.concatenate([e for _, e in parts]) if parts
                           else np.zeros((0, contract.embedding_size), dtype=np.float32))


def most_likely(probabilities: Mapping[str, float], k: int) -> list[dict]:
    """The k most likely classes, most likely first; ties keep the labels' order, so the first entry is
    always the answer's label (argmax also takes the first of equals)."""
    ranked = sorted(probabilities.items(), key=lambda item: item[1], reverse=True)  # stable: ties keep order
    return [{"label": label, "probability": p} for label, p in ranked[:k]]


def prediction_columns(probabilities: np.ndarray, contract: ModelContract,
                       embeddings: np.ndarray | None = None) -> dict[str, Any]:
    """The reference's prediction columns (monitoring's frame), from probabilities (and the embedding
    output, which a contract with one requires)."""
    chosen, reported = decide(probabilities, contract)
    columns: dict[str, Any] = {PROBABILITY: np.asarray(reported, np.float64),
                               PREDICTED_LABEL: np.asarray(contract.labels, dtype=object)[chosen]}
    if len(contract.labels) > 2:
        columns |= {class_probability_column(label): np.asarray(probabilities[:, i], np.float64)
                    for i, label in enumerate(contract.labels)}
    if contract.embedding_size:
        if embeddings is None:
            raise ValueError(f"{contract.name}: its contract has an embedding output, and no embeddings were given")
        columns |= {name: np.asarray(embeddings[:, i], np.float64) for i, name in enumerate(contract.embedding_columns)}
    return columns


def answer_columns(answer: Mapping[str, Any], contract: ModelContract) -> dict[str, Any]:
    """The same columns, from one logged answer (what `answers` returned)."""
    row = {PROBABILITY: float(answer["probability"]), PREDICTED_LABEL: str(answer["label"])}
    if len(contract.labels) > 2:
        row |= {class_probability_column(label): float(answer["probabilities"][label]) for label in contract.labels}
    if contract.embedding_size:
        row |= dict(zip(contract.embedding_columns, map(float, answer[EMBEDDING])))
    return row


class Predictor:
    """A package, ready to score: its contract, its codec and one onnxruntime session."""

    def __init__(self, files: PackageFiles, *, settings: SessionSettings = SessionSettings(),
                 max_batch: int = DEFAULT_MAX_BATCH, example: dict | None = None):
        self.files = files
        self.contract = files.contract
        self.codec: Codec = codec_for(self.contract, files.files_dir, max_batch=max_batch, example=example)
        self.session = open_session(files.onnx_path, settings)
        check_inputs(self.contract, self.session)

    def probabilities(self, records: list[Any]) -> np.ndarray:
        """Decoded records (what codec.parse / codec.validate return) -> [rows, classes] probabilities."""
        return self.run([self.contract.probability_output], records)[0]

    def scores(self, records: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities and, for a graph with an embedding output, the embeddings: in the same graph runs."""
        if self.contract.embedding_output is None:
            return self.probabilities(records), None
        probabilities, embeddings = self.run([self.contract.probability_output, self.contract.embedding_output], records)
        return probabilities, embeddings

    def run(self, outputs: list[str], records: list[Any]) -> list[np.ndarray]:
        """The graph's `outputs` for `records`, in the runs the codec groups them into (codec.graph_runs),
        each output's rows back in the records' order."""
        runs = self.codec.graph_runs(records)
        if len(runs) == 1:
            return self.session.run(outputs, self.codec.feeds(records))
        parts = [self.session.run(outputs, self.codec.feeds([records[i] for i in rows])) for rows in runs]
        back = np.argsort(np.concatenate(runs))  # run order -> the records' order
        return [np.concatenate([part[k] for part in parts])[back] for k in range(len(outputs))]

    def score_rows(self, rows: list[Mapping[str, Any]], chunk: int | None = None) -> np.ndarray:
        """Stored rows (reference, holdout, test split) -> probabilities, through the very path a request
        takes: request record -> validation -> feeds -> graph."""
        parts = [self.probabilities(records) for records in self.codec.validated_chunks(rows, chunk)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.contract.labels)), dtype=np.float32)

    def score_rows_with_embeddings(self, rows: list[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray | None]:
        """The same path, with the embedding output too (monitoring's reference and windows)."""
        return stack_scores([self.scores(records) for records in self.codec.validated_chunks(rows)], self.contract)
