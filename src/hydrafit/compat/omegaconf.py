"""OmegaConf's private names: its YAML quoting and its interpolation parser.

- yaml_text writes a config as OmegaConf.to_yaml does (the same quoting of 'true', '1', '1.0'),
  on libyaml's C emitter: 2.6 ms instead of 8 for a job's hydra node on a 2-core AMD EPYC. Used
  for the .hydra/ records of a vectorised sweep's members and their hparams.yaml.
- parsing_cached: OmegaConf parses an interpolation's text (`${hydra:runtime.output_dir}`) with
  its ANTLR grammar every time the value is read, ~1.5 ms a read; a 480-job vectorised sweep
  read them 49.3 s -> 42.3 s with each distinct text parsed once. A parse tree is only read when
  resolved (its tokens keep their own text), so one tree serves every read. The parser is
  replaced where omegaconf.base and omegaconf._utils imported it, and put back on exit.
"""
from __future__ import annotations

import contextlib
import functools

import yaml
from omegaconf import OmegaConf, _utils, base, grammar_parser

CHECKED = "omegaconf 2.3.0 to 2.3.1"


class _Dumper(getattr(yaml, "CDumper", yaml.Dumper)):
    """OmegaConf's YAML dumper (its str representer) on libyaml's C emitter where PyYAML has one."""


_Dumper.add_representer(str, _utils.get_omega_conf_dumper().str_representer)


def yaml_text(tree) -> str:
    """OmegaConf.to_yaml's text of `tree` (a config, or a dict of configs and plain values)."""
    def plain(node):
        return OmegaConf.to_container(node, enum_to_str=True) if OmegaConf.is_config(node) else node
    container = {k: plain(v) for k, v in tree.items()} if isinstance(tree, dict) else plain(tree)
    return yaml.dump(container, Dumper=_Dumper, default_flow_style=False, allow_unicode=True, sort_keys=False)


@contextlib.contextmanager
def parsing_cached():
    """Within: each distinct interpolation text is parsed once. Nested uses share one cache."""
    if hasattr(base.parse, "cache_info"):  # an outer use installed it
        yield
        return
    original = base.parse
    base.parse = _utils.parse = functools.lru_cache(maxsize=4096)(grammar_parser.parse)
    try:
        yield
    finally:
        base.parse = _utils.parse = original


def check() -> None:
    """Raise, naming OmegaConf, if a name used here is gone or changed (tests/test_compat.py)."""
    import omegaconf

    problems = [name for owner, name in ((base, "parse"), (_utils, "parse"), (_utils, "get_omega_conf_dumper"))
                if not callable(getattr(owner, name, None))]
    if not problems and base.parse is not grammar_parser.parse and not hasattr(base.parse, "cache_info"):
        problems.append("omegaconf.base.parse is no longer grammar_parser.parse")
    if problems:
        raise RuntimeError(f"omegaconf {omegaconf.__version__}: {', '.join(problems)} "
                           f"(hydrafit.compat.omegaconf was checked with {CHECKED})")
