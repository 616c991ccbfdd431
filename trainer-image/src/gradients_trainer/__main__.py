"""Entry point: ``python -m gradients_trainer``."""

from .contract import force_offline

force_offline()

from .cli import main  # noqa: E402

raise SystemExit(main())
