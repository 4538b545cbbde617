"""`numpyro-diffprior export`: keep a checkpoint's EMA weights only (a small file to ship).

    numpyro-diffprior export --checkpoint runs/coarse/checkpoint \
        --out numpyro_diffprior/data/pretrained/lsst-y10-coarse
"""

from __future__ import annotations

__all__ = ["add_parser", "run", "export_ema"]


def export_ema(checkpoint, out, *, extra=None):
    """Write the EMA weights and configs of `checkpoint` to directory `out` (atomic)."""
    from numpyro_diffprior.checkpoints import load_checkpoint, save_checkpoint

    ck = load_checkpoint(checkpoint)
    state = ck.train_state()
    return save_checkpoint(
        out,
        state,
        preset=ck.preset,
        normalizer=ck.normalizer,
        network_config=ck.network_config,
        training_config=ck.training_config,
        ema_only=True,
        extra={**ck.config.get("extra", {}), **(extra or {})},
        observation_range=ck.config.get("observation_range"),  # an amortised model's
    )


def add_parser(subparsers):
    p = subparsers.add_parser("export", help="keep a checkpoint's EMA weights only (to ship)")
    p.add_argument("--checkpoint", required=True, help="a full checkpoint directory")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--note", default=None, help="free text stored as extra['trained_on']")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    extra = {"trained_on": args.note} if args.note else None
    path = export_ema(args.checkpoint, args.out, extra=extra)
    print(f"exported EMA weights to {path}")
    return 0
