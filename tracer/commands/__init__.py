"""One module per ``cogtrace`` subcommand: ``add_arguments(parser)`` and ``run(args) -> int``.

``add_arguments`` must not import torch or SAT (it runs for ``--help``); ``run`` may.
"""
