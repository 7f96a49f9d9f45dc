"""The layout: how one decode step's GPUs are split, for the simulator and the runtime alike.

``Layout(tpa, kvp, dp, tpf, ep, pp, strategy)``. Per pipeline stage there are N GPUs, used twice per
layer [paper §2.2]:

- attention as ``N = TPA x KVP x DP`` (heads x KV sequence x requests);
- FFN as ``N = TPF x EP`` (tensor- x expert-parallel).

Identity: ``tpa*kvp*dp == tpf*ep*ffn_replicas``, where ``ffn_replicas`` is 1 except for Medha, whose
FFN runs at the attention TP width in every KVP group (``ffn_replicas = kvp``) [paper §1].

Rank order (global rank = ``pp_rank * N + r``; inside a stage, the first named axis varies fastest):

- attention: ``r = (dp_rank * kvp + kvp_rank) * tpa + tpa_rank``; with ``kvp_inner``
  ``r = (dp_rank * tpa + tpa_rank) * kvp + kvp_rank`` (KVP innermost);
- FFN:       ``r = ep_rank * tpf + tpf_rank``; with ``ep_inner`` ``r = tpf_rank * ep + ep_rank``.

The innermost dimension's groups are consecutive ranks, so they are the ones kept inside one scale-up
domain when the layout spans several (helix.placement); the search tries both orders where they differ.

Worked examples (pinned by tests/test_layout.py):

- N = 8 as KVP = 4 x TPA = 2: TPA groups [0,1] [2,3] [4,5] [6,7]; KVP groups [0,2,4,6] [1,3,5,7];
  then the same ranks as TPF = 8: one FFN group [0..7].
- N = 8 as TPF = 4 x EP = 2: TPF groups [0,1,2,3] [4,5,6,7]; EP groups [0,4] [1,5] [2,6] [3,7].
- TP = 4 with PP = 2 (8 GPUs): stage 0 is ranks 0-3, stage 1 is ranks 4-7; PP groups [0,4] [1,5] ...
- TP = 8 with a TPF = 1 x EP = 8 MoE (TensorRT-LLM's and SGLang's "TP8 EP8"): one TPA group [0..7];
  TPF groups [0] [1] ... [7]; one EP group [0..7].
- DP+EP on 8 GPUs as DP = 8, TPF = 2 x EP = 4: TPA groups [0] ... [7]; TPF groups [0,1] [2,3] [4,5]
  [6,7]; EP groups [0,2,4,6] [1,3,5,7].

Production layouts (the engines' names): EP is TensorRT-LLM's ``moe_expert_parallel_size``, vLLM's
``--enable-expert-parallel``, SGLang's ``--ep-size``; attention DP is SGLang's ``--enable-dp-attention
--dp-size`` and TensorRT-LLM's ``enable_attention_dp``; KVP is TensorRT-LLM's Helix context parallelism
and vLLM's / SGLang's decode context parallelism (DCP); TPF is ``moe_tensor_parallel_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

from helix.errors import HelixInputError

STRATEGIES = ("tp", "tp_pp", "dp_ep", "medha", "helix")


def _positive_int(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HelixInputError(field, f"must be an integer >= 1, got {value!r}")
    return value


def _split(field: str, n: int, part: int) -> int:
    """n / part, where ``part`` (a positive integer) must divide n."""
    _positive_int(field, part)
    _positive_int("gpus", n)
    if n % part:
        raise HelixInputError(field, f"must divide the GPU count {n}, got {part}")
    return n // part


@dataclass(frozen=True, slots=True)
class Layout:
    tpa: int = 1  # TPA: attention tensor-parallel width over heads
    kvp: int = 1  # KVP: attention KV-parallel width over the sequence
    dp: int = 1  # DP: attention data-parallel width over requests
    tpf: int = 1  # TPF: FFN tensor-parallel width
    ep: int = 1  # EP: expert-parallel width
    pp: int = 1  # PP: pipeline stages
    strategy: str = "helix"
    kvp_inner: bool = False  # rank order: KVP (not TPA) innermost in attention (helix.placement)
    ep_inner: bool = False  # rank order: EP (not TPF) innermost in the FFN

    def __post_init__(self) -> None:
        for name in ("tpa", "kvp", "dp", "tpf", "ep", "pp"):
            _positive_int(name, getattr(self, name))
        for name in ("kvp_inner", "ep_inner"):
            value = getattr(self, name)
            if value is False or value is True:  # the common case, checked first (the search builds ~10^5)
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value not in (0, 1):
                raise HelixInputError(name, f"must be true or false, got {value!r}")
            object.__setattr__(self, name, bool(value))
        if self.kvp_inner and self.strategy != "helix":
            raise HelixInputError("kvp_inner", f"a KVP-innermost rank order is Helix's (Medha ties its FFN TP group "
                                  f"to attention TP), got strategy {self.strategy!r}")
        if self.strategy not in STRATEGIES:
            raise HelixInputError("strategy", f"unknown {self.strategy!r}; allowed: {', '.join(STRATEGIES)}")
        attn, ffn = self.tpa * self.kvp * self.dp, self.tpf * self.ep * self.ffn_replicas
        if attn != ffn:
            what = "tpf*ep*kvp" if self.strategy == "medha" else "tpf*ep"
            raise HelixInputError("layout", f"kvp*tpa*dp (={attn}) must equal {what} (={ffn})")
        s = self.strategy
        if s in ("tp", "tp_pp") and not (self.kvp == self.dp == 1 and self.tpa == self.tpf * self.ep):
            raise HelixInputError("layout", f"{s}: attention TP = N (kvp = dp = 1) and the FFN as tpf*ep = N, "
                                  f"got {self.describe()}")
        if s == "tp" and self.pp != 1:
            raise HelixInputError("layout", "tp: pp must be 1 (use tp_pp for pipeline stages)")
        if s == "dp_ep" and not (self.tpa == self.kvp == 1):
            raise HelixInputError("layout", f"dp_ep: attention is data-parallel only (tpa = kvp = 1), got "
                                  f"{self.describe()}")
        if s == "medha" and not (self.tpf == self.tpa and self.ep == 1 and self.dp == 1):
            raise HelixInputError("layout", f"medha: TP is tied (tpf == tpa), ep = dp = 1, got {self.describe()}")

    # ---- strategy constructors
    @classmethod
    def tp(cls, n: int, ep: int = 1) -> Layout:
        """Megatron TP over n GPUs: attention TP = n (KV duplicated when n > K; MLA's latent cache is held
        whole on every rank), the MoE as TPF x EP = n (TPF = n / EP), dense layers TP = n."""
        return cls(tpa=n, tpf=_split("ep", n, ep), ep=ep, strategy="tp")

    @classmethod
    def tp_pp(cls, tp: int, pp: int, ep: int = 1) -> Layout:
        return cls(tpa=tp, tpf=_split("ep", tp, ep), ep=ep, pp=pp, strategy="tp_pp")

    @classmethod
    def dp_ep(cls, n: int, pp: int = 1, tpf: int = 1) -> Layout:
        """Data-parallel attention (each GPU owns whole requests), the MoE as TPF x EP = n (EP = n / TPF)."""
        return cls(dp=n, tpf=tpf, ep=_split("tpf", n, tpf), pp=pp, strategy="dp_ep")

    @classmethod
    def medha(cls, kvp: int, tp: int, pp: int = 1) -> Layout:
        """Medha-style KVP x TP; TP is tied between attention and FFN, FFN replicated per KVP group."""
        return cls(tpa=tp, kvp=kvp, tpf=tp, pp=pp, strategy="medha")

    @classmethod
    def helix(cls, kvp: int, tpa: int = 1, tpf: int | None = None, ep: int = 1, dp: int = 1, pp: int = 1,
              kvp_inner: bool = False, ep_inner: bool = False) -> Layout:
        """Helix: attention KVP x TPA (x DP), FFN TPF x EP on the same GPUs (TPF defaults to N / EP); the rank
        order's innermost dimensions (``kvp_inner``, ``ep_inner``) as the fields say."""
        n = kvp * tpa * dp
        if tpf is None:
            _positive_int("ep", ep)
            if n % ep:
                raise HelixInputError("ep", f"must divide kvp*tpa*dp (={n}), got {ep}")
            tpf = n // ep
        return cls(tpa=tpa, kvp=kvp, dp=dp, tpf=tpf, ep=ep, pp=pp, strategy="helix", kvp_inner=kvp_inner,
                   ep_inner=ep_inner)

    # ---- sizes
    @property
    def ffn_replicas(self) -> int:
        return self.kvp if self.strategy == "medha" else 1

    @property
    def gpus_per_stage(self) -> int:
        """N."""
        return self.tpa * self.kvp * self.dp

    @property
    def num_gpus(self) -> int:
        return self.gpus_per_stage * self.pp

    def describe(self) -> str:
        parts = [f"{k}={getattr(self, k)}" for k in ("tpa", "kvp", "dp", "tpf", "ep", "pp")]
        parts += [k for k in ("kvp_inner", "ep_inner") if getattr(self, k)]  # the default order is not named
        return f"{self.strategy}(" + ", ".join(parts) + ")"

    # ---- ranks and groups (global ranks)
    def attention_coords(self, rank: int) -> tuple[int, int, int, int]:
        """(pp_rank, dp_rank, kvp_rank, tpa_rank) of a global rank."""
        n = self.gpus_per_stage
        pp_rank, r = divmod(rank, n)
        dp_rank, r = divmod(r, self.kvp * self.tpa)
        if self.kvp_inner:
            tpa_rank, kvp_rank = divmod(r, self.kvp)
        else:
            kvp_rank, tpa_rank = divmod(r, self.tpa)
        return pp_rank, dp_rank, kvp_rank, tpa_rank

    def ffn_coords(self, rank: int) -> tuple[int, int, int, int]:
        """(pp_rank, replica, ep_rank, tpf_rank) of a global rank; replica is the Medha KVP group."""
        pp_rank, r = divmod(rank, self.gpus_per_stage)
        replica, r = divmod(r, self.tpf * self.ep)
        if self.ep_inner:
            tpf_rank, ep_rank = divmod(r, self.ep)
        else:
            ep_rank, tpf_rank = divmod(r, self.tpf)
        return pp_rank, replica, ep_rank, tpf_rank

    def _groups(self, key) -> list[list[int]]:
        groups: dict[tuple, list[int]] = {}
        for rank in range(self.num_gpus):
            groups.setdefault(key(rank), []).append(rank)
        return list(groups.values())

    def tpa_groups(self) -> list[list[int]]:
        return self._groups(lambda r: self.attention_coords(r)[:3])

    def kvp_groups(self) -> list[list[int]]:
        return self._groups(lambda r: (*self.attention_coords(r)[:2], self.attention_coords(r)[3]))

    def attention_groups(self) -> list[list[int]]:
        """TPA x KVP ranks serving the same requests: the O-projection's TP group."""
        return self._groups(lambda r: self.attention_coords(r)[:2])

    def tpf_groups(self) -> list[list[int]]:
        return self._groups(lambda r: self.ffn_coords(r)[:3])

    def ep_groups(self) -> list[list[int]]:
        return self._groups(lambda r: (*self.ffn_coords(r)[:2], self.ffn_coords(r)[3]))

    def stage_groups(self) -> list[list[int]]:
        """All N ranks of one pipeline stage (the FFN group of a dense model under Helix)."""
        return self._groups(lambda r: r // self.gpus_per_stage)

    def pp_groups(self) -> list[list[int]]:
        return self._groups(lambda r: r % self.gpus_per_stage)


def check_layout_for_model(layout: Layout, model, *, allow_uneven: bool = False, redundant_experts: int = 0) -> None:
    """Model-dependent validity: head and expert divisibility, TPA vs KV heads for Helix and Medha, and
    (unless ``allow_uneven``) that every sharded width divides evenly, as engines require."""
    heads, kv_heads = model.num_query_heads, model.cache_heads
    s = layout.strategy
    if s in ("helix", "medha") and layout.tpa > kv_heads:
        extra = " (MLA has one latent KV head, so TPA must be 1)" if model.is_mla else ""
        raise HelixInputError("tpa", f"{s} needs tpa <= KV heads ({kv_heads}){extra}, got {layout.tpa}")
    if s in ("helix", "medha") and kv_heads % layout.tpa:
        raise HelixInputError("tpa", f"must divide the KV heads ({kv_heads}), got {layout.tpa}")
    if heads % layout.tpa:
        raise HelixInputError("tpa", f"must divide the query heads ({heads}), got {layout.tpa}")
    width = heads * model.attention_value_dim
    if s == "helix" and width % (layout.tpa * layout.kvp):
        # After the all-to-all each rank owns width / (TPA x KVP) of the attention output [paper §2.1.1].
        raise HelixInputError("layout", f"the attention output width Q*v (={width}) must divide evenly over "
                              f"tpa*kvp (={layout.tpa * layout.kvp})")
    _check_experts(layout, model, redundant_experts)
    if layout.pp > model.num_layers:
        raise HelixInputError("pp", f"must be <= num_layers ({model.num_layers}), got {layout.pp}")
    if not allow_uneven:
        _check_even(layout, model)


def check_redundant_experts(model, redundant_experts: int) -> None:
    """R redundant expert slots: an integer in 0..E (at most one extra slot per expert on average;
    DeepSeek's EP144 deployment runs 32 on 256), and only for an MoE model."""
    if isinstance(redundant_experts, bool) or not isinstance(redundant_experts, int) or redundant_experts < 0:
        raise HelixInputError("redundant_experts", f"must be an integer >= 0, got {redundant_experts!r}")
    if redundant_experts and not model.is_moe:
        raise HelixInputError("redundant_experts", f"needs an MoE model; {model.name!r} is dense")
    if redundant_experts > model.num_experts:
        raise HelixInputError("redundant_experts", f"must be at most the expert count ({model.num_experts}), "
                                                   f"got {redundant_experts}")


def _check_experts(layout: Layout, model, redundant_experts: int) -> None:
    check_redundant_experts(model, redundant_experts)
    if not model.is_moe:
        if layout.ep != 1:
            raise HelixInputError("ep", f"must be 1 for the dense model {model.name!r}, got {layout.ep}")
        return
    slots = model.num_experts + redundant_experts
    if slots % layout.ep:
        what = "num_experts + redundant_experts" if redundant_experts else "the expert count"
        raise HelixInputError("ep", f"must divide {what} ({slots}), got {layout.ep}")


def _check_even(layout: Layout, model) -> None:
    """Every sharded width divides evenly over its group (engines shard whole rows; --allow-uneven keeps
    the rest for exploration, with fractional widths)."""
    s = layout.strategy
    dense_group = {"helix": layout.tpf * layout.ep, "tp": layout.tpf * layout.ep, "tp_pp": layout.tpf * layout.ep,
                   "medha": layout.tpf, "dp_ep": 1}[s]
    vocab_group = {"dp_ep": 1, "medha": layout.tpa}.get(s, layout.tpa * layout.kvp * layout.dp)
    checks = []
    if model.num_dense_ffn_layers:
        checks.append(("tpf", "the FFN width", model.ffn_dim, dense_group, "tpf*ep" if s != "medha" else "tpf"))
    if model.is_moe:
        checks.append(("tpf", "the expert FFN width", model.expert_ffn_dim, layout.tpf, "tpf"))
        if model.num_shared_experts and s != "dp_ep":
            checks.append(("tpf", "the shared-expert width", model.num_shared_experts * model.expert_ffn_dim,
                           dense_group, "tpf*ep" if s != "medha" else "tpf"))
    checks.append(("layout", "the vocabulary", model.vocab_size, vocab_group, "the vocabulary-parallel group"))
    for field, what, size, group, name in checks:
        if size % group:
            raise HelixInputError(field, f"{what} {size} does not divide over {name} = {group}; use a divisor "
                                  "or --allow-uneven")
