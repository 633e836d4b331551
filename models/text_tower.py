"""The text tower of the multi-task ranker: a small BERT whose top layers are fine-tuned.

A query or product text is tokenized (the encoder's ``max_length``), run through a BERT-style
encoder and mean-pooled over its tokens, exactly as :class:`~datamodules.text_encoding
.TextEncoder` embeds texts for the labels. The top ``fine_tune_layers`` transformer layers
are a copy the ranker trains; everything below them is frozen.

Cost control: the frozen part (the embedding layer and the lower layers) gives the same
output for a text every time, so it runs **once per unique text** when the tower is built;
its per-token outputs are kept in memory, packed without padding. Training then runs only the
top layers, once per unique text in a batch (a product shown in ten requests of a batch is
encoded once), in chunks of similar length so that little time goes to padding.
``benchmarks/scripts/bench_text_tower.py`` measures the speed-up against running the whole
encoder for every batch.

``fine_tune_layers``: ``0`` keeps the whole encoder frozen (each text's pooled vector comes
from the TextEncoder's on-disk cache); ``N`` fine-tunes the top N layers; ``"all"`` every
transformer layer (the word/position embedding layer stays frozen and cached). Fields not in
``tuned_fields`` (e.g. long descriptions on CPU) always use the frozen pooled vectors.
``precision="bf16"`` runs the tuned layers under bfloat16 autocast (weights and the cache stay
float32).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from datamodules.text_encoding import TextEncoder, mean_pool

CHUNK_TEXTS = 256  # texts per top-layer call: sorted by length, so chunks carry little padding
ALL_LAYERS = "all"
# "bf16" runs the tuned layers under bfloat16 autocast: about 1.7x faster training on CPUs
# with bf16 instructions (AVX512-BF16, AMX), slower elsewhere; "32" is plain float32.
PRECISIONS = ("32", "bf16")


def encoder_layers(model) -> nn.ModuleList:
    """The transformer layers of a BERT-style ``transformers`` model."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(model, "embeddings"):
        raise ValueError(
            f"the text tower needs a BERT-style encoder (embeddings + encoder.layer), "
            f"not {type(model).__name__}"
        )
    return layers


def n_tuned_layers(setting, n_layers: int) -> int:
    """``fine_tune_layers`` (0, N or "all") as a number of top layers."""
    if setting == ALL_LAYERS:
        return n_layers
    if isinstance(setting, bool) or not isinstance(setting, int) or not 0 <= setting <= n_layers:
        raise ValueError(
            f"fine_tune_layers must be 0..{n_layers} (this encoder's layers) or "
            f"{ALL_LAYERS!r}, not {setting!r}"
        )
    return setting


def attention_mask_4d(config, hidden: torch.Tensor, mask: torch.Tensor):
    """The mask a ``transformers`` layer expects for ``config``'s attention implementation."""
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=mask)


def run_layers(layers, config, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``hidden`` [texts, tokens, d] through ``layers`` under the padding ``mask``."""
    extended = attention_mask_4d(config, hidden, mask)
    for layer in layers:
        out = layer(hidden, attention_mask=extended)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


@dataclass
class PackedStates:
    """Per-token outputs of the frozen part, one text after another, no padding."""

    states: torch.Tensor  # float32 [total tokens, d]
    offsets: torch.Tensor  # int64 [texts]: first token of each text
    lengths: torch.Tensor  # int64 [texts]: tokens of each text ([CLS] and [SEP] included)

    def padded(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States of ``rows`` padded to the longest: [len(rows), tokens, d], and the mask."""
        lengths = self.lengths[rows]
        steps = torch.arange(int(lengths.max()))
        mask = steps.unsqueeze(0) < lengths.unsqueeze(1)
        index = self.offsets[rows].unsqueeze(1) + torch.where(mask, steps, 0)
        return self.states[index], mask.long()


def cached_frozen_states(
    encoder: TextEncoder, texts: list[str], n_lower: int, progress: bool = False
) -> PackedStates:
    """:func:`frozen_states`, kept with the encoder (the DataModule's, which every seed of a
    benchmark shares) while the layer and the texts are the same; the last one only."""
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    key = ("frozen_states", n_lower, digest.hexdigest())
    if key not in encoder.derived:
        encoder.derived.clear()
        encoder.derived[key] = frozen_states(
            encoder.model, encoder.tokenizer, texts, n_lower, encoder.max_length, progress
        )
    return encoder.derived[key]


@torch.inference_mode()
def frozen_states(
    model,
    tokenizer,
    texts: list[str],
    n_lower: int,
    max_length: int,
    progress: bool = False,
    batch_size: int = 128,
) -> PackedStates:
    """Run the embedding layer and the lowest ``n_lower`` layers once over every text."""
    layers = encoder_layers(model)[:n_lower]
    accepted = set(tokenizer.model_input_names)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    per_text: list[torch.Tensor | None] = [None] * len(texts)
    starts = range(0, len(order), batch_size)
    bar = tqdm(
        starts, desc=f"text tower: {n_lower} frozen layers", unit="batch", disable=not progress
    )
    for start in bar:
        ids = order[start : start + batch_size]
        batch = tokenizer(
            [texts[i] for i in ids],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        inputs = {k: v for k, v in batch.items() if k in accepted}
        hidden = model.embeddings(
            input_ids=inputs["input_ids"], token_type_ids=inputs.get("token_type_ids")
        )
        hidden = run_layers(layers, model.config, hidden, inputs["attention_mask"])
        for j, i in enumerate(ids):
            per_text[i] = hidden[j, : int(inputs["attention_mask"][j].sum())].float().clone()
    lengths = torch.tensor([len(t) for t in per_text], dtype=torch.int64)
    offsets = torch.cumsum(lengths, 0) - lengths
    return PackedStates(torch.cat(per_text), offsets, lengths)


class TextTower(nn.Module):
    """Embeds text ids (indexes into the DataModule's ``texts``) into pooled vectors.

    ``tuned`` holds the trainable copy of the top layers (empty when frozen); ``forward``
    gives float32 ``[len(ids), dim]`` for ``ids`` of texts given as ``tuned_texts``, and
    :meth:`frozen` the frozen encoder's pooled vector of any text.
    """

    def __init__(
        self,
        texts: list[str],
        tuned_texts: np.ndarray,
        text_encoder: TextEncoder,
        fine_tune_layers,
        progress: bool = False,
        precision: str = "32",
    ):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(
                f"text_precision must be one of {', '.join(PRECISIONS)}, not {precision!r}"
            )
        self.precision = precision
        # Pooled vectors of the whole frozen encoder, for frozen fields and fine_tune_layers 0
        # (read from the on-disk cache; a plain attribute: not trained, not checkpointed).
        self._frozen = torch.from_numpy(text_encoder.encode(texts, progress=progress))
        self.dim = int(self._frozen.shape[1])
        n_layers = len(encoder_layers(text_encoder.model))
        self.n_tuned = n_tuned_layers(fine_tune_layers, n_layers)
        self.model_config = text_encoder.model.config
        self.tuned = nn.ModuleList(
            copy.deepcopy(layer)
            for layer in encoder_layers(text_encoder.model)[n_layers - self.n_tuned :]
        )
        # The source model is frozen and in eval mode; its copy trains (dropout included).
        self.tuned.requires_grad_(True).train()
        self._row_of = torch.full((len(texts),), -1, dtype=torch.int64)
        self._cache: PackedStates | None = None
        if self.n_tuned:
            tuned_texts = np.unique(tuned_texts[tuned_texts >= 0])
            self._row_of[torch.from_numpy(tuned_texts)] = torch.arange(len(tuned_texts))
            self._cache = cached_frozen_states(
                text_encoder, [texts[i] for i in tuned_texts], n_layers - self.n_tuned, progress
            )
        self.stats = {"texts_through_tuned_layers": 0}

    def frozen(self, ids: torch.Tensor) -> torch.Tensor:
        """The frozen encoder's pooled vectors of ``ids`` (no gradient), on their device (the
        cached vectors and states stay in host memory, shared by every seed)."""
        return self._frozen[ids.cpu()].to(ids.device)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Pooled vectors of ``ids`` through the tuned top layers (frozen when there are none)."""
        if not self.n_tuned:
            return self.frozen(ids)
        device, rows = ids.device, self._row_of[ids.cpu()]
        if (rows < 0).any():
            raise ValueError("the text tower was asked for a text outside its tuned fields")
        order = torch.argsort(self._cache.lengths[rows], stable=True)
        pieces = []
        for start in range(0, len(order), CHUNK_TEXTS):
            hidden, mask = self._cache.padded(rows[order[start : start + CHUNK_TEXTS]])
            hidden, mask = hidden.to(device), mask.to(device)
            # Autocast follows the device the layers run on.
            with torch.autocast(device.type, torch.bfloat16, enabled=self.precision == "bf16"):
                hidden = run_layers(self.tuned, self.model_config, hidden, mask)
            pieces.append(mean_pool(hidden, mask).float())
        self.stats["texts_through_tuned_layers"] += len(ids)
        unsort = torch.empty_like(order)
        unsort[order] = torch.arange(len(order))
        return torch.cat(pieces)[unsort.to(device)]
