"""Hardware blocks, one module each; configs live beside them (``*_config.py`` or in the
module) so that ``perf`` and ``sim`` can read them without elaborating anything."""
