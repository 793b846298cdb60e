"""The organ simulator agents: nine per-system transformers over hourly value tokens.

One sequence position per ICU hour. For agent ``s`` (one of the nine systems) and hour ``t`` the
input vector is the sum of

- one learned embedding per visible variable of its last observed value's bin token (the
  :class:`~organsim.data.tokenizers.BinTokenizer` id, 0 = never observed in the window), plus
  learned vectors scaled by "observed this hour", "hours since the last observation" (capped,
  in [0, 1]) and the last value's z-score. The visible variables are the agent's own system's
  and those of the reference systems it was given (any subset of the other eight, per sample);
- a learned vector per reference system given, and the agent's system embedding;
- projections of the treatments (given at ``t`` and planned for ``t + 1``), the statics and the
  hour of the stay;

all passed through a LayerNorm and fed via ``inputs_embeds`` to a Hugging Face decoder
(:class:`transformers.LlamaModel` built from a preset, or any local causal-LM checkpoint, optionally
with LoRA adapters). The decoder is causal over hours, so one pass predicts the next hour at every
position (efficient SFT) and :meth:`OrganAgents.forward` also steps with ``past_key_values``.

Each agent has one linear head per variable of its system giving the predictive distribution of
its value at ``t + 1`` (:class:`~organsim.agents.distribution.BinnedDistribution`): over the
variable's *change* bins from its last observed value when it has one in the window
(:class:`~organsim.data.tokenizers.ChangeTokenizer`: the forecast stays anchored on the last
measurement, however extreme), over its *value* bins (anchored on the clinical cut-offs) when it
has none. Training starts each head at the training frequencies of its bins. Beside the
cross-entropy of the observed bins, :meth:`OrganAgents.forward` returns the squared error of the
distribution's mean (z units), the quantity the forecasts are scored on, so training can also fit
the mean directly (``TrainConfig.mean_loss_weight``).

The nine agents share one backbone (``backbone_sharing="shared"``, the sequences of the nine
systems are one batch of ``B * 9``) or each has its own (``"separate"``); embeddings of values and
the heads are per variable, hence per agent, in both cases. Measured at the same budget (``tiny``,
6 epochs, a 1000-stay engine cohort; bench/results/agents_engine*.json), separate backbones
forecast better (mean nMSE 1/6/24 h 0.199/0.301/0.331 vs 0.205/0.326/0.373 with references) at
2.4 times the parameters and 1.4 times the CPU time per epoch: the nine systems stop competing for
one small decoder's capacity. Shared stays the default: it meets the PhysioNet targets, is the
layout a single pretrained ``base_model`` decoder needs, and keeps one cache for rollouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import LlamaConfig, LlamaModel

from organsim.catalog import SYSTEMS

PRESETS: dict[str, dict[str, int]] = {
    "micro": {"hidden_size": 32, "num_layers": 1, "num_heads": 2, "intermediate_size": 64, "context_hours": 12, "window_hours": 24},
    "tiny": {"hidden_size": 64, "num_layers": 2, "num_heads": 4, "intermediate_size": 128, "context_hours": 48, "window_hours": 72},
    "small": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 256, "context_hours": 48, "window_hours": 72},
    "base": {"hidden_size": 512, "num_layers": 8, "num_heads": 8, "intermediate_size": 1536, "context_hours": 72, "window_hours": 96},
}
"""Backbone sizes. ``micro`` is for tests; ``tiny`` trains on 2 CPU cores in minutes; ``small``
on a CPU in an hour or on a GPU; ``base`` wants a GPU."""

BACKBONE_SHARING = ("shared", "separate")
REFERENCE_MODES = ("none", "all")


@dataclass(frozen=True)
class AgentConfig:
    """Architecture of :class:`OrganAgents` (stored in the model directory's config.json).

    Attributes
    ----------
    preset
        Name of the size preset in :data:`PRESETS` this came from (informative).
    hidden_size, num_layers, num_heads, intermediate_size
        Decoder size (ignored in favour of the checkpoint's when ``base_model`` is set, except
        that ``hidden_size`` is then read from the checkpoint).
    context_hours
        Context length C the forecaster asks for (hours).
    window_hours
        Training window length in hours; also the largest number of positions a forecast
        reaches (``context_hours + horizon - 1 <= window_hours`` keeps rollouts in trained range).
    dropout
        Attention dropout of the decoder and dropout on the input vectors.
    change_bin_counts
        Change bins per variable (the :class:`~organsim.data.tokenizers.ChangeTokenizer`'s).
    backbone_sharing
        ``"shared"``: one decoder for the nine agents; ``"separate"``: one decoder per system.
    variables
        Catalog variable codes (the tokenizer's order).
    variable_systems
        The system of each variable.
    bin_counts
        Bins per variable (the tokenizer's ``bin_counts``).
    treatment_codes, static_codes
        Treatment and static codes, in ForecastBatch order.
    since_cap_hours
        Cap of the hours-since-last-observation input.
    feedback_variables
        Variables whose forecast is fed back as measured in free-running steps (those charted
        in at least half of the training hours); the others count as not measured then.
    base_model
        Directory of a local causal-LM checkpoint used as the decoder (None: build from preset).
    lora_r
        LoRA rank on the base model's linear layers (0 = fine-tune every decoder weight).
    lora_alpha, lora_dropout
        LoRA scale and dropout.
    """

    preset: str
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    context_hours: int
    window_hours: int
    variables: tuple[str, ...]
    variable_systems: tuple[str, ...]
    bin_counts: tuple[int, ...]
    change_bin_counts: tuple[int, ...]
    treatment_codes: tuple[str, ...]
    static_codes: tuple[str, ...]
    dropout: float = 0.0
    backbone_sharing: str = "shared"
    since_cap_hours: float = 48.0
    feedback_variables: tuple[str, ...] = ()
    base_model: str | None = None
    lora_r: int = 0
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    systems: tuple[str, ...] = field(default=SYSTEMS)

    def __post_init__(self) -> None:
        if self.backbone_sharing not in BACKBONE_SHARING:
            raise ValueError(f"backbone_sharing must be one of {BACKBONE_SHARING}, got {self.backbone_sharing!r}")
        if self.base_model is not None and self.backbone_sharing != "shared":
            raise ValueError("a base model is one decoder: use backbone_sharing='shared' with base_model")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0, got {self.lora_r}")
        if self.lora_r and self.base_model is None:
            raise ValueError("LoRA adapts a pretrained base model: set base_model (a local checkpoint directory) with lora_r")
        if self.base_model is None and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if not 1 <= self.context_hours <= self.window_hours:
            raise ValueError(f"need 1 <= context_hours ({self.context_hours}) <= window_hours ({self.window_hours})")
        if not (len(self.variables) == len(self.variable_systems) == len(self.bin_counts) == len(self.change_bin_counts)):
            raise ValueError("variables, variable_systems, bin_counts and change_bin_counts need one entry per variable")
        unknown = sorted(set(self.variable_systems) - set(self.systems))
        if unknown:
            raise ValueError(f"unknown systems {unknown}; known: {list(self.systems)}")
        empty = [s for s in self.systems if s not in self.variable_systems]
        if empty:
            raise ValueError(f"systems without variables: {empty}")
        if min(self.bin_counts) < 1 or min(self.change_bin_counts) < 1:
            raise ValueError("every variable needs at least one value bin and one change bin")
        unknown_feedback = sorted(set(self.feedback_variables) - set(self.variables))
        if unknown_feedback:
            raise ValueError(f"feedback_variables {unknown_feedback} are not among the variables")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def fed_back(self) -> np.ndarray:
        """``(V,)`` bool over :attr:`variables`: those in :attr:`feedback_variables`."""
        return np.isin(np.array(self.variables), self.feedback_variables)

    @classmethod
    def from_preset(cls, preset: str, **fields: Any) -> AgentConfig:
        """The config of a preset in :data:`PRESETS`, with ``fields`` set on top."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        return cls(preset=preset, **{**PRESETS[preset], **fields})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AgentConfig:
        """Rebuild from :meth:`to_dict` output."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown agent config keys {unknown}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


@dataclass
class HourInputs:
    """Model inputs for B windows of T hours (see :mod:`organsim.agents.features` for how they are built).

    Attributes
    ----------
    last_ids : torch.Tensor
        ``(B, T, V)`` int64 bin id of each variable's last observed value (0 = none yet).
    observed : torch.Tensor
        ``(B, T, V)`` float, 1 where the variable was measured that hour.
    since : torch.Tensor
        ``(B, T, V)`` float in [0, 1], hours since the last observation / cap (1 = never or >= cap).
    last_z : torch.Tensor
        ``(B, T, V)`` float, z-score of the last observed value (0 = none).
    treatments : torch.Tensor
        ``(B, T, 2 * n_treatments)`` float, z-scored treatments given at t, then planned for t + 1.
    static : torch.Tensor
        ``(B, 2 * n_statics)`` float, z-scored statics (0 unknown) and known-indicators.
    hours : torch.Tensor
        ``(B, T)`` float, log1p of the ICU hour index (clamped at 0) / 6.
    """

    last_ids: torch.Tensor
    observed: torch.Tensor
    since: torch.Tensor
    last_z: torch.Tensor
    treatments: torch.Tensor
    static: torch.Tensor
    hours: torch.Tensor

    def to(self, device: torch.device | str) -> HourInputs:
        """The same inputs on ``device``."""
        return HourInputs(**{k: v.to(device) for k, v in vars(self).items()})


@dataclass
class AgentOutput:
    """What :meth:`OrganAgents.forward` returns.

    Attributes
    ----------
    logits : torch.Tensor | None
        ``(B, V, K)`` logits for the hour after the last position, over each variable's change
        bins where ``relative`` else over its value bins (K = the largest bin count; unused
        entries are a large negative number). Variable ``v``'s logits come from the agent of
        ``v``'s system. None when a loss was asked.
    relative : torch.Tensor | None
        ``(B, V)`` bool: the logits are over change bins (the variable has a last value).
    loss : torch.Tensor | None
        Weighted mean cross-entropy over observed targets (when targets were given).
    squared_error : torch.Tensor | None
        Weighted mean squared error of the predictive means in z units (value: z-score; change:
        z-change from the last value) over the observed targets, when ``target_z`` was given.
    n_targets : torch.Tensor | None
        Sum of the weights of the observed targets in the loss (their number with unit weights).
    past_key_values : Any
        The decoder cache (one per system for ``"separate"``), when ``use_cache``.
    """

    logits: torch.Tensor | None
    relative: torch.Tensor | None = None
    loss: torch.Tensor | None = None
    squared_error: torch.Tensor | None = None
    n_targets: torch.Tensor | None = None
    past_key_values: Any = None


def build_llama_backbone(config: AgentConfig) -> LlamaModel:
    """A randomly initialised :class:`transformers.LlamaModel` of the config's size.

    Its token embedding is unused (inputs come as ``inputs_embeds``) and is frozen at one row.
    """
    llama = LlamaConfig(
        vocab_size=1,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_heads,
        max_position_embeddings=max(config.window_hours, 8),
        attention_dropout=config.dropout,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaModel(llama)
    model.get_input_embeddings().requires_grad_(False)
    return model


def load_base_backbone(config: AgentConfig) -> nn.Module:
    """The decoder of a local causal-LM checkpoint (``config.base_model``), LoRA-wrapped when ``lora_r > 0``.

    Loaded with ``local_files_only=True`` (never from a hub). The token embedding is frozen.
    """
    from transformers import AutoModel

    model = AutoModel.from_pretrained(config.base_model, local_files_only=True)
    model.get_input_embeddings().requires_grad_(False)
    if config.lora_r:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, target_modules="all-linear")
        model = get_peft_model(model, lora)
    return model


def base_model_hidden_size(path: str) -> int:
    """The hidden size of a local checkpoint, read from its config."""
    from transformers import AutoConfig

    return int(AutoConfig.from_pretrained(path, local_files_only=True).hidden_size)


class OrganAgents(nn.Module):
    """The nine organ simulator agents (see the module docstring).

    Parameters
    ----------
    config
        The architecture. With ``config.base_model`` set, the decoder is loaded from that local
        directory and ``config.hidden_size`` must equal its hidden size.
    """

    def __init__(self, config: AgentConfig) -> None:
        super().__init__()
        self.config = config
        n_systems, n_variables = len(config.systems), len(config.variables)
        hidden = config.hidden_size
        system_index = {s: i for i, s in enumerate(config.systems)}
        self.register_buffer(
            "variable_system", torch.tensor([system_index[s] for s in config.variable_systems], dtype=torch.long), persistent=False
        )
        vocab = [n + 1 for n in config.bin_counts]  # + the "never observed" id 0
        offsets = torch.tensor([0, *torch.tensor(vocab).cumsum(0)[:-1].tolist()], dtype=torch.long)
        self.register_buffer("id_offsets", offsets, persistent=False)

        # ---- inputs
        self.value_embedding = nn.Embedding(sum(vocab), hidden)
        # per variable: vectors scaled by "observed this hour", "hours since" and the last value's z-score
        self.continuous_projection = nn.Parameter(torch.randn(3, n_variables, hidden) * 0.02)
        self.system_embedding = nn.Parameter(torch.randn(n_systems, hidden) * 0.02)
        self.reference_embedding = nn.Parameter(torch.randn(n_systems, hidden) * 0.02)
        self.treatment_projection = nn.Linear(2 * len(config.treatment_codes), hidden)
        self.static_projection = nn.Linear(2 * len(config.static_codes), hidden)
        self.hour_projection = nn.Linear(1, hidden)
        self.input_norm = nn.LayerNorm(hidden)
        self.input_dropout = nn.Dropout(config.dropout)
        nn.init.normal_(self.value_embedding.weight, std=0.02)

        # ---- decoder(s)
        if config.base_model is not None:
            self.backbone = load_base_backbone(config)
            self.backbones = None
        elif config.backbone_sharing == "shared":
            self.backbone = build_llama_backbone(config)
            self.backbones = None
        else:
            self.backbone = None
            self.backbones = nn.ModuleList(build_llama_backbone(config) for _ in range(n_systems))

        # per-variable weight of a target in the loss (set by training; saved with the weights)
        self.register_buffer("loss_weights", torch.ones(n_variables))
        # each bin's value in z units (value bins: z-score; change bins: z-change from the last value);
        # rebuilt from the tokenizers (set_bin_values), so not stored with the weights
        width = max(max(config.bin_counts), max(config.change_bin_counts))
        self.register_buffer("value_bins_z", torch.zeros(n_variables, width), persistent=False)
        self.register_buffer("change_bins_z", torch.zeros(n_variables, width), persistent=False)

        # ---- heads: each agent owns one linear head per variable of its system: logits over the
        # variable's value bins, then over its change bins
        self.heads = nn.ModuleList(
            nn.Linear(hidden, n + m) for n, m in zip(config.bin_counts, config.change_bin_counts, strict=True)
        )

    # ------------------------------------------------------------------ inputs
    def reference_mask(self, references: torch.Tensor) -> torch.Tensor:
        """``(B, S, S)`` bool: which systems each agent sees; its own system is always on."""
        eye = torch.eye(len(self.config.systems), dtype=torch.bool, device=references.device)
        return references.bool() | eye

    def embed_hours(self, inputs: HourInputs, references: torch.Tensor) -> torch.Tensor:
        """``(B, S, T, H)`` input vectors of every agent.

        Parameters
        ----------
        inputs
            The hourly inputs of B windows of T hours.
        references
            ``(B, S, S)`` bool, ``references[b, s, r]``: agent ``s`` consults system ``r`` in
            window ``b`` (the diagonal is forced on).
        """
        visible_systems = self.reference_mask(references).to(inputs.last_z.dtype)  # (B, S, S)
        visible = visible_systems[:, :, self.variable_system]  # (B, S, V)
        values = self.value_embedding(inputs.last_ids + self.id_offsets)  # (B, T, V, H)
        agents = torch.einsum("btvh,bsv->bsth", values, visible)  # (B, S, T, H)
        continuous = torch.stack([inputs.observed, inputs.since, inputs.last_z], dim=2)  # (B, T, 3, V)
        # sum over visible variables of feature * vector: one matmul over (feature, variable)
        masked = continuous[:, None] * visible[:, :, None, None, :]  # (B, S, T, 3, V)
        agents = agents + masked.flatten(-2) @ self.continuous_projection.flatten(0, 1)  # (B, S, T, H)
        agents = agents + self.system_embedding[None, :, None, :]
        agents = agents + (visible_systems @ self.reference_embedding)[:, :, None, :]  # (B, S, 1, H)
        shared = (
            self.treatment_projection(inputs.treatments)
            + self.static_projection(inputs.static)[:, None, :]
            + self.hour_projection(inputs.hours.unsqueeze(-1))
        )  # (B, T, H)
        return self.input_dropout(self.input_norm(agents + shared[:, None]))

    # ------------------------------------------------------------------ decoder
    def _decode(
        self,
        embeds: torch.Tensor,
        attention_mask: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        past_key_values: Any,
        use_cache: bool,
    ) -> tuple[torch.Tensor, Any]:
        """Run the decoder(s) on ``(B, S, T, H)`` vectors; returns hidden states of the same shape and the cache."""
        b, s, t, h = embeds.shape
        if self.backbones is None:
            flat_mask = None if attention_mask is None else attention_mask.repeat_interleave(s, dim=0)  # (B*S, T_total)
            flat_pos = None if position_ids is None else position_ids.repeat_interleave(s, dim=0)  # (B*S, T)
            out = self.backbone(
                inputs_embeds=embeds.reshape(b * s, t, h),
                attention_mask=flat_mask,
                position_ids=flat_pos,
                past_key_values=past_key_values,
                use_cache=use_cache,
            )
            return out.last_hidden_state.reshape(b, s, t, h), (out.past_key_values if use_cache else None)
        hidden, caches = [], []
        for index, backbone in enumerate(self.backbones):
            out = backbone(
                inputs_embeds=embeds[:, index],
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=None if past_key_values is None else past_key_values[index],
                use_cache=use_cache,
            )
            hidden.append(out.last_hidden_state)
            caches.append(out.past_key_values)
        return torch.stack(hidden, dim=1), (caches if use_cache else None)

    def _variable_logits(self, v: int, states: torch.Tensor, relative: torch.Tensor) -> torch.Tensor:
        """Logits of variable ``v`` from agent states ``(n, H)``: over change bins where ``relative`` ``(n,)``
        (a last value exists), else over value bins; ``(n, max(value bins, change bins))``, padding very negative."""
        logits = self.heads[v](states).float()
        n_values, n_changes = self.config.bin_counts[v], self.config.change_bin_counts[v]
        width = max(n_values, n_changes)
        low = torch.finfo(logits.dtype).min
        values = nn.functional.pad(logits[:, :n_values], (0, width - n_values), value=low)
        changes = nn.functional.pad(logits[:, n_values:], (0, width - n_changes), value=low)
        return torch.where(relative[:, None], changes, values)

    @torch.no_grad()
    def init_output_priors(self, value_counts: list[np.ndarray], change_counts: list[np.ndarray]) -> None:
        """Start every head at the training frequencies of its bins (its bias = add-one smoothed log-frequency).

        Parameters
        ----------
        value_counts, change_counts
            Per variable, counts of training targets in each value bin and each change bin.
        """
        for v, head in enumerate(self.heads):
            counts = np.concatenate([value_counts[v], change_counts[v]]).astype(np.float64)
            if counts.shape != head.bias.shape:
                raise ValueError(f"variable {self.config.variables[v]!r}: {counts.shape[0]} counts for {head.bias.shape[0]} bins")
            n_values = self.config.bin_counts[v]
            log_freq = np.concatenate([
                np.log((counts[:n_values] + 1) / (counts[:n_values].sum() + n_values)),
                np.log((counts[n_values:] + 1) / (counts[n_values:].sum() + len(counts) - n_values)),
            ])
            head.bias.copy_(torch.from_numpy(log_freq).float())

    @torch.no_grad()
    def set_bin_values(self, value_bins_z: torch.Tensor, change_bins_z: torch.Tensor) -> None:
        """Set each bin's value in z units, for the squared error of the predictive mean.

        Parameters
        ----------
        value_bins_z
            ``(V, K)`` z-score of every value bin's center (zero-padded to K, the widest head).
        change_bins_z
            ``(V, K)`` every change bin's center as a change of z-score (zero-padded).
        """
        if value_bins_z.shape != self.value_bins_z.shape or change_bins_z.shape != self.change_bins_z.shape:
            raise ValueError(f"bin values must be {tuple(self.value_bins_z.shape)}, got {tuple(value_bins_z.shape)} and {tuple(change_bins_z.shape)}")
        self.value_bins_z.copy_(value_bins_z)
        self.change_bins_z.copy_(change_bins_z)

    def _stacked_logits(self, hidden: torch.Tensor, relative: torch.Tensor, variables: Sequence[int]) -> torch.Tensor:
        """``(N, S, H)`` states and ``(N, n)`` bool -> ``(N, n, K)`` logits of ``variables`` (indices into
        ``config.variables``), each from its system's state, padded to the widest head (K) with very
        negative logits."""
        width = max(max(a, b) for a, b in zip(self.config.bin_counts, self.config.change_bin_counts, strict=True))
        rows = []
        for column, v in enumerate(variables):
            logits = self._variable_logits(v, hidden[:, int(self.variable_system[v])], relative[:, column])  # (N, k_v)
            rows.append(nn.functional.pad(logits, (0, width - logits.shape[-1]), value=torch.finfo(logits.dtype).min))
        return torch.stack(rows, dim=1)

    def _head_logits(self, hidden: torch.Tensor, relative: torch.Tensor) -> torch.Tensor:
        """``(B, S, H)`` last-position states and ``(B, V)`` bool -> ``(B, V, K)`` logits (padding bins very negative)."""
        return self._stacked_logits(hidden, relative, range(len(self.heads)))

    def hourly_logits(self, inputs: HourInputs, references: torch.Tensor, variables: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The next-hour logits at every position of teacher-forced windows, for some variables.

        One full pass over the windows, as in training (no padding mask, positions ``0..T-1``):
        position ``t`` gives the distribution of hour ``t + 1``.

        Parameters
        ----------
        inputs
            B windows of T hours.
        references
            ``(B, S, S)`` bool reference sets (see :meth:`embed_hours`).
        variables
            Indices into ``config.variables`` of the n variables wanted.

        Returns
        -------
        logits
            ``(B, T, n, K)`` float32 logits, over change bins where ``relative`` else over value
            bins (K = the widest head; padding bins very negative).
        relative
            ``(B, T, n)`` bool: the variable has a last value at ``t`` (its logits are over change bins).
        """
        hidden, _ = self._decode(self.embed_hours(inputs, references), None, None, None, False)  # (B, S, T, H)
        b, s, t, h = hidden.shape
        relative = inputs.last_ids[:, :, list(variables)] > 0  # (B, T, n)
        states = hidden.transpose(1, 2).reshape(b * t, s, h)  # (B*T, S, H)
        logits = self._stacked_logits(states, relative.reshape(b * t, -1), variables)  # (B*T, n, K)
        return logits.reshape(b, t, len(variables), -1), relative

    def _loss(
        self, hidden: torch.Tensor, relative: torch.Tensor, targets: torch.Tensor, target_z: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Weighted sums of the cross-entropies and of the mean's squared errors over the observed targets,
        and the sum of their weights.

        Heads are applied only where a target exists; target weights are :attr:`loss_weights` of its
        variable. The squared-error sum is None without ``target_z``.
        """
        b_index, t_index, v_index = (targets >= 0).nonzero(as_tuple=True)  # (N,) each
        states = hidden[b_index, self.variable_system[v_index], t_index]  # (N, H)
        labels = targets[b_index, t_index, v_index]  # (N,)
        in_changes = relative[b_index, t_index, v_index]  # (N,)
        truth = None if target_z is None else target_z[b_index, t_index, v_index]  # (N,)
        cross_entropy = hidden.new_zeros((), dtype=torch.float32)
        squared_error = None if truth is None else hidden.new_zeros((), dtype=torch.float32)
        for v in torch.unique(v_index).tolist():
            rows = v_index == v
            logits = self._variable_logits(v, states[rows], in_changes[rows])  # (n, k)
            cross_entropy = cross_entropy + self.loss_weights[v] * nn.functional.cross_entropy(logits, labels[rows], reduction="sum")
            if truth is not None:
                k = logits.shape[-1]
                bin_z = torch.where(in_changes[rows, None], self.change_bins_z[v, :k], self.value_bins_z[v, :k])  # (n, k)
                mean_z = (logits.softmax(-1) * bin_z).sum(-1)  # (n,)
                squared_error = squared_error + self.loss_weights[v] * ((mean_z - truth[rows]) ** 2).sum()
        return cross_entropy, squared_error, self.loss_weights[v_index].sum()

    def forward(
        self,
        inputs: HourInputs,
        references: torch.Tensor,
        targets: torch.Tensor | None = None,
        target_z: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: Any = None,
        use_cache: bool = False,
    ) -> AgentOutput:
        """The training loss (with ``targets``) or the next-hour logits after the last position (without).

        Parameters
        ----------
        inputs
            B windows of T hours.
        references
            ``(B, S, S)`` bool reference sets (see :meth:`embed_hours`).
        targets
            ``(B, T, V)`` int64 0-based bin of each variable's value at t + 1, -100 where not
            observed: a change bin (from the last observed value) where the variable has one in
            the window (``inputs.last_ids > 0``), else a value bin. Given: the loss over observed
            targets at every position is returned (heads are applied only where a target exists)
            and ``logits`` is None.
        target_z
            ``(B, T, V)`` float, with ``targets``: the observed value at t + 1 in z units, as a
            change from the last observed value where the target is a change bin, else as a
            z-score (anything where unobserved). Given: the squared error of the predictive mean
            is returned too.
        attention_mask
            ``(B, T_past + T)`` 1 = attend, 0 = padding (left padding for contexts that start
            before the stay); None = attend to all.
        position_ids
            ``(B, T)`` positions (needed with left padding and when stepping with a cache).
        past_key_values
            Cache from an earlier call with ``use_cache=True``.
        use_cache
            Return the decoder cache for stepping.

        Returns
        -------
        AgentOutput
        """
        embeds = self.embed_hours(inputs, references)
        hidden, cache = self._decode(embeds, attention_mask, position_ids, past_key_values, use_cache)  # (B, S, T, H)
        if targets is None:
            relative = inputs.last_ids[:, -1] > 0  # (B, V)
            return AgentOutput(logits=self._head_logits(hidden[:, :, -1], relative), relative=relative, past_key_values=cache)
        cross_entropy, squared_error, n = self._loss(hidden, inputs.last_ids > 0, targets, target_z)
        return AgentOutput(
            logits=None,
            loss=cross_entropy / n.clamp_min(1),
            squared_error=None if squared_error is None else squared_error / n.clamp_min(1),
            n_targets=n,
            past_key_values=cache,
        )


def reference_sets(mode: str, batch_size: int, n_systems: int, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(B, S, S)`` bool reference sets for a fixed mode: ``"none"`` (own system only) or ``"all"``."""
    if mode not in REFERENCE_MODES:
        raise ValueError(f"references must be one of {REFERENCE_MODES}, got {mode!r}")
    value = mode == "all"
    return torch.full((batch_size, n_systems, n_systems), value, dtype=torch.bool, device=device)


def sample_reference_sets(batch_size: int, n_systems: int, generator: torch.Generator, *, p_none: float = 1 / 3, p_all: float = 1 / 3) -> torch.Tensor:
    """``(B, S, S)`` random reference sets for training: per (window, agent) none, all, or each
    other system with probability 1/2, with probabilities ``p_none``, ``p_all`` and the rest."""
    kind = torch.rand(batch_size, n_systems, 1, generator=generator)
    coin = torch.rand(batch_size, n_systems, n_systems, generator=generator) < 0.5
    return torch.where(kind < p_none, False, torch.where(kind < p_none + p_all, True, coin))


def count_parameters(module: nn.Module, *, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)

