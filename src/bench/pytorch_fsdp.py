"""PyTorch FSDP reference run for shardsweep's side-by-side benchmark.

Trains the same MAE (ViT encoder + MAE decoder) as `src/model/mae.rs` with PyTorch's own
FullyShardedDataParallel (FSDP1) on CPU over gloo, fp32, AdamW, and reports per-step wall time,
so the harness's step time can be set against PyTorch FSDP's for the same shape and batch.

The model mirrors mae.rs parameter for parameter (names, shapes, init, forward): patch embedding
as a linear layer on patchified pixels ordered (p, q, c), cls and mask tokens, fixed 2-D sin-cos
position embeddings, pre-norm blocks (LayerNorm eps 1e-6, qkv with bias, exact GELU), masking by
argsort of per-sample noise, MSE on masked patches only (no norm_pix_loss). Each Block is its own
FSDP unit and the remaining parameters form the root unit, like the harness's units.

With strategy "eager" it is the same model in plain PyTorch eager on one device (no process
group, no FSDP), on "device" ("cpu" or "cuda"), with bf16 autocast if "param_dtype" is "bf16"
(PyTorch's usual bf16 recipe) and the fused AdamW (the harness's), and reports the caching
allocator's peak over the timed steps. Its AdamW has the harness's two groups (weight decay on
tensors of two or more dimensions only), which FSDP's flat parameters cannot express (the
harness runs its FSDP comparisons without decay). Given "data" (one file per rank, in rank
order: the harness's own images and masking noise of that rank for every step, raw
little-endian fp32: [steps, micro_batch, channels, size, size] then [steps, micro_batch,
patches]) and "lr_schedule" (the harness's learning rate at every step), it trains exactly what
the harness trains, so the two runs' losses can be compared step by step.

Launch: torchrun --standalone --nproc-per-node N pytorch_fsdp.py --config C.json --out O.json
Config: {"model": {image_size, channels, patch, width, depth, mlp, heads, decoder_width,
decoder_depth, decoder_mlp, decoder_heads, mask_ratio[, name]}, "micro_batch", "steps",
"warmup_steps", "strategy": "full_shard" | "shard_grad_op" | "no_shard" | "eager",
"threads_per_rank", "seed", "lr"[, "weight_decay", "beta1", "beta2", "eps", "device",
"param_dtype", "data", "lr_schedule"]}. Output: step times of the timed steps, and the loss of
every step (warm-up included; the mean over ranks).
"""
import argparse, contextlib, json, math, os, statistics, sys, time

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.fsdp import BackwardPrefetch, ShardingStrategy
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import ModuleWrapPolicy

MODEL_KEYS = {"image_size", "channels", "patch", "width", "depth", "mlp", "heads", "decoder_width",
              "decoder_depth", "decoder_mlp", "decoder_heads", "mask_ratio"}
OPTIONAL = {"weight_decay": 0.05, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,  # OptimizerSettings
            "device": "cpu", "param_dtype": "fp32", "data": None, "lr_schedule": None}
REQUIRED = {"model", "micro_batch", "steps", "warmup_steps", "strategy", "threads_per_rank",
            "seed", "lr"}
STRATEGIES = {"full_shard": ShardingStrategy.FULL_SHARD,
              "shard_grad_op": ShardingStrategy.SHARD_GRAD_OP,
              "no_shard": ShardingStrategy.NO_SHARD}


def sincos_pos(width, grid):
    """MAE's get_2d_sincos_pos_embed with a zero cls row, [1, 1 + grid^2, width], as in mae.rs."""
    omega = torch.exp(torch.arange(width // 4, dtype=torch.float64) / (width // 4) * -math.log(1e4))
    axis = lambda pos: torch.cat([(a := pos[:, None] * omega[None]).sin(), a.cos()], 1)
    coords = torch.arange(grid * grid, dtype=torch.float64)
    emb = torch.cat([axis(coords % grid), axis(torch.div(coords, grid, rounding_mode="floor"))], 1)
    return torch.cat([torch.zeros(1, width, dtype=torch.float64), emb]).unsqueeze(0).float()


class Block(nn.Module):
    """Pre-norm transformer block; parameter names match mae.rs's block_layout."""

    def __init__(self, width, mlp, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = nn.ModuleDict({"qkv": nn.Linear(width, 3 * width),
                                   "proj": nn.Linear(width, width)})
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = nn.ModuleDict({"fc1": nn.Linear(width, mlp), "fc2": nn.Linear(mlp, width)})

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.attn["qkv"](self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.attn["proj"](a)
        return x + self.mlp["fc2"](F.gelu(self.mlp["fc1"](self.norm2(x))))


class Mae(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        grid = c["image_size"] // c["patch"]
        self.patches, self.patch_dim = grid * grid, c["patch"] ** 2 * c["channels"]
        self.keep = int(self.patches * (1.0 - c["mask_ratio"]))  # Truncates, like `as i64`.
        w, e = c["width"], c["decoder_width"]
        self.patch_embed = nn.Linear(self.patch_dim, w)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, w))
        self.norm = nn.LayerNorm(w, eps=1e-6)
        self.decoder_embed = nn.Linear(w, e)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, e))
        self.decoder_norm = nn.LayerNorm(e, eps=1e-6)
        self.decoder_pred = nn.Linear(e, self.patch_dim)
        self.blocks = nn.ModuleList(Block(w, c["mlp"], c["heads"]) for _ in range(c["depth"]))
        self.decoder_blocks = nn.ModuleList(
            Block(e, c["decoder_mlp"], c["decoder_heads"]) for _ in range(c["decoder_depth"]))
        # Fixed, not trained: buffers, so they are neither counted nor sharded.
        self.register_buffer("pos", sincos_pos(w, grid), persistent=False)
        self.register_buffer("decoder_pos", sincos_pos(e, grid), persistent=False)

    @torch.no_grad()
    def init_like_layout(self, seed):
        """layout.rs's init_unit over the units in order after tch::manual_seed(seed): parameter
        order here equals the Rust unit layouts' order, so the weights come out the same."""
        torch.manual_seed(seed)
        # named_parameters lists the tokens (attributes of the root) before its submodules;
        # mae.rs's root unit interleaves them, so restore its order (blocks already agree).
        root = ["patch_embed.weight", "patch_embed.bias", "cls_token", "norm.weight", "norm.bias",
                "decoder_embed.weight", "decoder_embed.bias", "mask_token", "decoder_norm.weight",
                "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
        named = dict(self.named_parameters())
        for name in root + [n for n in named if n not in root]:
            p = named[name]
            if p.dim() == 3:  # cls and mask tokens.
                p.normal_(0.0, 0.02)
            elif p.dim() == 2:  # Linear weight [out, in]: xavier-uniform.
                p.uniform_(-(b := math.sqrt(6.0 / sum(p.shape))), b)
            else:  # The only 1-D weights are norm scales; every bias starts at zero.
                p.fill_(1.0 if name.endswith("weight") else 0.0)

    def patchify(self, images):
        n, g, p = images.shape[0], self.c["image_size"] // self.c["patch"], self.c["patch"]
        x = images.reshape(n, self.c["channels"], g, p, g, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(n, g * g, self.patch_dim)

    def forward(self, images, noise):
        patches = self.patchify(images)
        b, w, e = patches.shape[0], self.c["width"], self.c["decoder_width"]
        ids_shuffle = noise.argsort(1)
        ids_restore = ids_shuffle.argsort(1)
        mask = torch.ones(b, self.patches, device=images.device)
        mask[:, : self.keep] = 0
        mask = mask.gather(1, ids_restore)
        x = self.patch_embed(patches) + self.pos[:, 1:]
        x = x.gather(1, ids_shuffle[:, : self.keep, None].expand(-1, -1, w))
        x = torch.cat([(self.cls_token + self.pos[:, :1]).expand(b, 1, w), x], 1)
        for block in self.blocks:
            x = block(x)
        x = self.decoder_embed(self.norm(x))
        tokens = self.mask_token.repeat(b, self.patches - self.keep, 1)
        shuffled = torch.cat([x[:, 1:], tokens], 1)
        x = torch.cat([x[:, :1], shuffled.gather(1, ids_restore[..., None].expand(-1, -1, e))], 1)
        x = x + self.decoder_pos
        for block in self.decoder_blocks:
            x = block(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        per_patch = (pred - patches).square().mean(-1)
        return (per_patch * mask).sum() / mask.sum()


def rust_trainable_params(c):
    """ModelConfig::trainable_params from presets.rs, to check the module against the formula."""
    block = lambda d, m: 4 * d * d + 4 * d + 2 * d * m + m + d + 4 * d
    w, e, pd = c["width"], c["decoder_width"], c["patch"] ** 2 * c["channels"]
    enc = pd * w + w + w + c["depth"] * block(w, c["mlp"]) + 2 * w
    dec = w * e + e + e + c["decoder_depth"] * block(e, c["decoder_mlp"]) + 2 * e + e * pd + pd
    return enc + dec


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(args.config) as f:
        cfg = json.load(f)
    # Reject typos and missing keys loudly, like serde's deny_unknown_fields on the Rust side.
    unknown, missing = set(cfg) - REQUIRED - set(OPTIONAL), REQUIRED - set(cfg)
    model_bad = (MODEL_KEYS ^ set(cfg.get("model", {}))) - {"name"}
    if unknown or missing or model_bad or cfg["strategy"] not in {*STRATEGIES, "eager"}:
        raise SystemExit(f"bad config: unknown {unknown}, missing {missing}, model keys "
                         f"{model_bad}, strategy {cfg.get('strategy')!r}")
    cfg = {**OPTIONAL, **cfg}
    torch.set_num_threads(cfg["threads_per_rank"])
    eager, device = cfg["strategy"] == "eager", torch.device(cfg["device"])
    if not eager:
        dist.init_process_group("gloo")
    rank, world = (0, 1) if eager else (dist.get_rank(), dist.get_world_size())
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16)
                if cfg["param_dtype"] == "bf16" else contextlib.nullcontext())

    # Same seed on every rank, so every rank builds identical weights without a broadcast.
    model = Mae(cfg["model"])
    model.init_like_layout(cfg["seed"])
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == rust_trainable_params(cfg["model"]), (parameters, cfg["model"])
    # FSDP1's defaults otherwise (flat parameters, use_orig_params=False), as most FSDP users
    # run it: AdamW then updates one flat shard per unit, as the harness does. Flat parameters
    # mix 2-D weights with biases and norms, so they cannot hold the harness's two decay groups:
    # the harness's FSDP comparisons pass weight_decay 0, the same on both sides.
    model = model.to(device) if eager else FSDP(
        model, sharding_strategy=STRATEGIES[cfg["strategy"]],
        auto_wrap_policy=ModuleWrapPolicy({Block}), device_id=torch.device("cpu"),
        backward_prefetch=BackwardPrefetch.BACKWARD_PRE, limit_all_gathers=True)
    # Eager runs the fused AdamW, as the harness does; FSDP keeps the default, as its users run it.
    # Eager's parameters keep their shapes, so they form the harness's two groups: decay for
    # tensors of two or more dimensions only (MAE's add_weight_decay).
    params = model.parameters() if not eager else [
        {"params": [p for p in model.parameters() if p.dim() >= 2]},
        {"params": [p for p in model.parameters() if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=cfg["lr"],
                            betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"],
                            weight_decay=cfg["weight_decay"], fused=True if eager else None)

    # All data made up front, per rank, so the timed loop measures training only.
    m, total = cfg["model"], cfg["warmup_steps"] + cfg["steps"]
    shape = (total, cfg["micro_batch"], m["channels"], m["image_size"], m["image_size"])
    noise_shape = (*shape[:2], (m["image_size"] // m["patch"]) ** 2)
    if cfg["data"] is not None:
        if not isinstance(cfg["data"], list) or len(cfg["data"]) != world:
            raise SystemExit(f"data: one file per rank ({world}), got {cfg['data']!r}")
        pixels, patches = math.prod(shape), math.prod(noise_shape)
        raw = torch.from_file(cfg["data"][rank], size=pixels + patches, dtype=torch.float32)
        images, noise = raw[:pixels].view(shape), raw[pixels:].view(noise_shape)
    else:
        gen = torch.Generator().manual_seed(cfg["seed"] * 1000 + rank + 1)
        images, noise = torch.rand(shape, generator=gen), torch.rand(noise_shape, generator=gen)
    images, noise = images.to(device), noise.to(device)
    schedule = cfg["lr_schedule"] or [cfg["lr"]] * total
    if len(schedule) != total:
        raise SystemExit(f"lr_schedule has {len(schedule)} steps, the run {total}")

    step_s, losses = [], []
    for step in range(total):
        if step == cfg["warmup_steps"] and cuda:
            torch.cuda.reset_peak_memory_stats()
        if not eager:
            dist.barrier()  # Every rank starts the step together; the slowest rank sets the time.
        sync()
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = schedule[step]
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = model(images[step], noise[step])
        loss.backward()
        opt.step()
        sync()
        elapsed = time.perf_counter() - t0
        slowest = torch.tensor([elapsed], dtype=torch.float64)
        loss_sum = torch.tensor([loss.item()], dtype=torch.float64)
        if not eager:
            dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
            dist.all_reduce(loss_sum)
        losses.append(loss_sum.item() / world)  # Mean over ranks, each on its own batch.
        if step >= cfg["warmup_steps"]:
            step_s.append(slowest.item())

    if rank == 0:
        result = {"torch_version": torch.__version__, "strategy": cfg["strategy"],
                  "world_size": world, "parameters": parameters, "step_s": step_s,
                  "median_step_s": statistics.median(step_s) if step_s else None,
                  # JSON has no NaN: a diverged loss is written as null.
                  "losses": [l if math.isfinite(l) else None for l in losses],
                  "peak_allocated_bytes": torch.cuda.max_memory_allocated() if cuda else None}
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=1)
        os.replace(tmp, args.out)  # Readers never see a half-written file.
    if not eager:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
    # Everything is written and the process group destroyed. Interpreter finalization can
    # still abort in gloo's teardown ("terminate called without an active exception",
    # SIGABRT after destroy_process_group, about one run in ten on a loaded 2-core machine):
    # leave without it, so a finished run is not reported as a crashed one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
