"""`numpyro-diffprior train`: train the joint (theta, kappa) diffusion prior.

    numpyro-diffprior train --preset lsst-y10-coarse --steps 20000 --out runs/coarse

Data come from the on-the-fly simulator, or from a dataset file (`--data FILE`, written by
`numpyro-diffprior simulate`). `--resume` continues exactly from `OUT/checkpoint`.
"""

from __future__ import annotations

import dataclasses

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    from numpyro_diffprior.nets import NetworkConfig
    from numpyro_diffprior.presets import DEFAULT_PRESET
    from numpyro_diffprior.training import TrainingConfig

    net, tr = NetworkConfig(), TrainingConfig()
    p = subparsers.add_parser("train", help="train the joint diffusion prior (EDM)")
    p.add_argument("--preset", default=DEFAULT_PRESET)
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
    p.add_argument("--heldout", type=int, default=256, help="held-out maps for the final table")
    p.add_argument("--resume", action="store_true")
    p.add_argument(
        "--init-from",
        default=None,
        help="fine-tune: start from this checkpoint directory's EMA weights, or 'pretrained' "
        "for the model shipped for --preset (fresh optimiser, step 0)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    from numpyro_diffprior.nets import NetworkConfig
    from numpyro_diffprior.training import TrainingConfig
    from numpyro_diffprior.training_loop import dataset_source, train

    if args.steps < 2:
        raise ValueError(f"--steps must be >= 2, got {args.steps}")
    mult = tuple(int(m) for m in str(args.channel_mult).split(","))
    network_config = NetworkConfig(
        channels=args.width, channel_mult=mult, num_blocks=args.num_blocks, emb_dim=args.emb_dim
    )
    training_config = TrainingConfig(
        batch_size=args.batch_size,
        learning_rate=args.lr,
        warmup_steps=min(args.warmup, args.steps - 1),
        total_steps=args.steps,
        ema_halflife=args.ema_halflife,
        theta_weight=args.theta_weight,
        P_mean=args.P_mean,
        P_std=args.P_std,
    )
    sample_batch = heldout_source = None
    if args.data and args.pool:
        raise ValueError("--data and --pool are exclusive")
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
    )
    print(f"checkpoint: {ckpt.path} (step {ckpt.step})")
    print(dataclasses.asdict(ckpt.training_config))
    return 0
