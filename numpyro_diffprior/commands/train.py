"""`numpyro-diffprior train`: train the joint (theta, kappa) diffusion prior.

    numpyro-diffprior train --preset lsst-y10-coarse --steps 20000 --out runs/coarse

Data come from the on-the-fly simulator, or from a dataset file (`--data FILE`, written by
`numpyro-diffprior simulate`). `--resume` continues exactly from `OUT/checkpoint`.
"""

from __future__ import annotations

import ast
import dataclasses
import math
import os
import types

from numpyro_diffprior.commands.train_conditional import (
    add_conditional_arguments,
    check_conditional,
    run_conditional,
)

__all__ = [
    "add_parser",
    "run",
    "check_args",
    "check_hosts",
    "initialize_hosts",
    "HELDOUT_MIN_STEPS",
    "HELDOUT_DEFAULT",
]

# The held-out loss table (`--heldout`) is computed by default only for runs of at least
# HELDOUT_MIN_STEPS updates (a smoke run of a few steps would spend minutes on it).
HELDOUT_MIN_STEPS = 1000
HELDOUT_DEFAULT = 256


def _dataclass_defaults(module: str, cls: str) -> types.SimpleNamespace:
    """The literal field defaults of dataclass `cls` in `numpyro_diffprior.<module>`, read from
    its source (importing it would import jax and haiku: `--help` stays fast)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, f"{module}.py")) as fh:
        tree = ast.parse(fh.read())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    out = {}
    for stmt in node.body:
        if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            out[stmt.target.id] = ast.literal_eval(stmt.value)
    return types.SimpleNamespace(**out)


def add_parser(subparsers):
    net = _dataclass_defaults("nets", "NetworkConfig")
    tr = _dataclass_defaults("training", "TrainingConfig")
    p = subparsers.add_parser(
        "train",
        help="train the joint diffusion prior (EDM)",
        description="Train the joint (theta, kappa) diffusion prior and write OUT/checkpoint "
        "(pass it as `sample --model OUT/checkpoint`). Example (a smoke run of about a minute "
        "on 2 CPU cores): numpyro-diffprior train --preset tiny --steps 20 --out runs/tiny",
    )
    p.add_argument("--preset", default="lsst-y10-coarse", help="preset name")
    p.add_argument("--data", default=None, help="dataset file (default: simulate on the fly)")
    p.add_argument(
        "--pool",
        type=int,
        default=0,
        help="simulate this many maps once and reuse them (default 0: fresh maps every step)",
    )
    p.add_argument("--steps", type=int, required=True, help="total number of updates")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--batch-size", type=int, default=tr.batch_size)
    p.add_argument("--lr", type=float, default=tr.learning_rate)
    p.add_argument("--warmup", type=int, default=tr.warmup_steps)
    p.add_argument(
        "--final-lr-ratio", type=float, default=tr.final_lr_ratio,
        help="learning rate at --steps over --lr (cosine decay; 1: constant after the warmup)",
    )  # fmt: skip
    p.add_argument(
        "--max-seconds", type=float, default=None,
        help="stop after this much wall time and save (one process; --resume continues)",
    )  # fmt: skip
    p.add_argument("--ema-halflife", type=float, default=tr.ema_halflife, help="in steps")
    p.add_argument("--theta-weight", type=float, default=tr.theta_weight)
    p.add_argument("--P-mean", dest="P_mean", type=float, default=tr.P_mean)
    p.add_argument("--P-std", dest="P_std", type=float, default=tr.P_std)
    p.add_argument("--width", type=int, default=net.channels, help="base channels")
    p.add_argument(
        "--channel-mult", default=",".join(map(str, net.channel_mult)), help="e.g. 1,2,2"
    )
    p.add_argument("--num-blocks", type=int, default=net.num_blocks)
    p.add_argument("--emb-dim", type=int, default=net.emb_dim)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=1000)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument(
        "--heldout",
        type=int,
        default=None,
        help="held-out maps for the final loss table (OUT/heldout_loss.md), which costs about "
        "as much as a few hundred training steps; 0 skips it. Default: "
        f"{HELDOUT_DEFAULT} for --steps >= {HELDOUT_MIN_STEPS}, else 0",
    )
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--init-from",
        default=None,
        help="fine-tune: start from this checkpoint directory's EMA weights, or 'pretrained' "
        "for the model shipped for --preset (fresh optimiser, step 0)",
    )
    p.add_argument("--no-progress", action="store_true")
    hosts = p.add_argument_group(
        "several hosts",
        "data-parallel training over the devices of N processes (jax.distributed): start the "
        "same command on every host with its --process-id; docs/training.md",
    )
    hosts.add_argument(
        "--coordinator", default=None, help="HOST:PORT of process 0 (jax.distributed coordinator)"
    )
    hosts.add_argument("--num-processes", type=int, default=None, help="processes in all")
    hosts.add_argument("--process-id", type=int, default=None, help="this process: 0..N-1")
    add_conditional_arguments(p)
    p.set_defaults(func=run)
    return p


def check_hosts(args):
    """The multi-host flags, all or none; returns `jax.distributed.initialize`'s keyword
    arguments, or None on one host."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if all(v is None for v in given):
        return None
    if any(v is None for v in given):
        raise ValueError("--coordinator, --num-processes and --process-id go together")
    host, _, port = str(args.coordinator).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    if args.num_processes < 1 or not 0 <= args.process_id < args.num_processes:
        raise ValueError(
            f"need --num-processes >= 1 and 0 <= --process-id < --num-processes, got "
            f"{args.num_processes} and {args.process_id}"
        )
    if args.max_seconds is not None and args.num_processes > 1:
        raise ValueError("--max-seconds needs one process (each would stop at its own step)")
    return dict(
        coordinator_address=args.coordinator,
        num_processes=args.num_processes,
        process_id=args.process_id,
    )


def initialize_hosts(args) -> bool:
    """`jax.distributed.initialize` with the multi-host flags, before anything touches JAX's
    devices; True if it ran."""
    kwargs = check_hosts(args)
    if kwargs is None:
        return False
    import jax

    jax.distributed.initialize(**kwargs)
    return True


def _positive(args, names, *, integer=True, zero=False):
    for name in names:
        value = getattr(args, name)
        ok = value >= 0 if zero else value > 0
        if not (ok and math.isfinite(value)):
            kind = "integer" if integer else "number"
            bound = ">= 0" if zero else "> 0"
            option = "--" + name.replace("_", "-")
            raise ValueError(f"{option} must be a finite {kind} {bound}, got {value}")


def check_args(args):
    """Check the `train` flags before anything is imported or simulated; returns the channel
    multipliers. Raises ValueError / FileNotFoundError naming the flag and the value."""
    if args.steps < 2:
        raise ValueError(f"--steps must be >= 2, got {args.steps}")
    _positive(args, ["batch_size", "width", "num_blocks", "emb_dim", "checkpoint_every"])
    _positive(args, ["log_every"])
    _positive(args, ["warmup", "pool"], zero=True)
    _positive(args, ["lr", "ema_halflife"], integer=False)
    _positive(args, ["P_std"], integer=False)
    if not (0 < args.final_lr_ratio <= 1):
        raise ValueError(f"--final-lr-ratio must be in (0, 1], got {args.final_lr_ratio}")
    if args.max_seconds is not None:
        _positive(args, ["max_seconds"], integer=False)
    if not math.isfinite(args.P_mean) or not math.isfinite(args.theta_weight):
        raise ValueError("--P-mean and --theta-weight must be finite")
    if args.heldout is not None and args.heldout < 0:
        raise ValueError(f"--heldout must be >= 0 (0 skips the table), got {args.heldout}")
    try:
        mult = tuple(int(m) for m in str(args.channel_mult).split(","))
    except ValueError:
        mult = ()
    if not mult or min(mult) < 1:
        raise ValueError(
            f"--channel-mult must be comma-separated positive integers (e.g. 1,2,2), "
            f"got {args.channel_mult!r}"
        )
    if args.data and args.pool:
        raise ValueError("--data and --pool are exclusive")
    if args.data is not None:
        if not os.path.exists(args.data):
            raise FileNotFoundError(f"--data {args.data!r}: no such dataset file")
        if not os.path.isfile(args.data):
            raise ValueError(f"--data {args.data!r} is not a file (an HDF5 dataset from simulate)")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out!r} is a file; train writes a directory")
    if args.init_from not in (None, "pretrained"):
        if not os.path.isdir(args.init_from):
            raise FileNotFoundError(
                f"--init-from {args.init_from!r}: no such checkpoint directory (or 'pretrained')"
            )
    return mult


def run(args) -> int:
    mult = check_args(args)
    check_conditional(args)
    check_hosts(args)
    initialize_hosts(args)  # first: before anything touches JAX's devices
    if args.heldout is None:
        args.heldout = HELDOUT_DEFAULT if args.steps >= HELDOUT_MIN_STEPS else 0

    from numpyro_diffprior.nets import NetworkConfig
    from numpyro_diffprior.training import TrainingConfig
    from numpyro_diffprior.training_loop import dataset_source, train

    network_config = NetworkConfig(
        channels=args.width, channel_mult=mult, num_blocks=args.num_blocks, emb_dim=args.emb_dim
    )
    training_config = TrainingConfig(
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=min(args.warmup, args.steps - 1),
        total_steps=args.steps,
        final_lr_ratio=args.final_lr_ratio,
        ema_halflife=args.ema_halflife,
        theta_weight=args.theta_weight,
        P_mean=args.P_mean,
        P_std=args.P_std,
    )
    sample_batch = heldout_source = None
    if args.pool:
        import jax

        from numpyro_diffprior.training_loop import pool_source, simulator_source

        key = jax.random.fold_in(jax.random.key(args.seed), 11)
        sample_batch = pool_source(args.preset, args.pool, key)
        heldout_source = simulator_source(args.preset)
        print(f"training on a pool of {args.pool} simulated maps")
    if args.data:
        sample_batch, num = dataset_source(args.data, args.preset)
        print(f"training on {num} maps from {args.data}")
    init_from = args.init_from
    if init_from == "pretrained":
        from numpyro_diffprior.checkpoints import load_pretrained

        init_from = load_pretrained(args.preset)
    if args.conditional:  # the amortised model (commands.train_conditional)
        return run_conditional(args, network_config, training_config, sample_batch, init_from)
    ckpt = train(
        args.preset,
        args.out,
        steps=args.steps,
        sample_batch=sample_batch,
        network_config=network_config,
        training_config=training_config,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        log_every=args.log_every,
        num_heldout=args.heldout,
        heldout_source=heldout_source,
        progress=not args.no_progress,
        init_from=init_from,
        max_seconds=args.max_seconds,
    )
    if ckpt is None:  # another host's process: process 0 wrote the checkpoint
        return 0
    print(f"checkpoint: {ckpt.path} (step {ckpt.step})")
    print(dataclasses.asdict(ckpt.training_config))
    return 0
