"""The documentation's generated pages, made from the code at build time (an MkDocs hook:
``hooks:`` in mkdocs.yml), so that a new method, preset, key or module appears in the
docs without anyone editing a table:

- ``reference/configuration.md``: every config group of ``conf/``, each option with its
  file's first comment line as its description and its settings, the experiment presets
  with the groups they choose, and the keys of the three primary configs with their
  defaults and comments;
- ``reference/api/<package>.md``: the API reference of every package of ``sat``, rendered
  from the docstrings by mkdocstrings;
- ``index.md`` and ``changelog.md``: the README (the site's home page) and the changelog,
  their links made the site's.

``python tools/docs_reference.py`` prints the configuration page (to read it without MkDocs).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONF, PACKAGE = ROOT / "conf", ROOT / "sat"
PRIMARY = {"train": "train.py", "evaluate": "evaluate.py", "attack": "attack.py"}
# groups a primary config does not list in its defaults, and what picks their option
AUTOMATIC = {
    "method_tuning": "applied by itself: `method_tuning/<experiment>-<method>.yaml`, an experiment's settings for one "
                     "method (so `-m method=ce,sat` composes)",
    "debug_method": "applied by itself: `debug_method/<debug>-<method>.yaml`, a debug preset's settings for one method",
    "auto_start": "how `method.start_epoch=auto` decides: `auto_start@method.auto_start=<option>`",
}
HYDRA_OWN = {"hydra/launcher": "Hydra's own options too: `basic` (the default: one job after the other) and "
                               "`joblib` (the joblib plugin's config as it ships)",
             "hydra/sweeper": "`sat` is the default (`train.yaml`); Hydra's own `basic` too, and any sweeper plugin "
                              "installed (`hydra/sweeper=optuna`)"}


def description(path: Path) -> str:
    """A config file's description: its first comment line (a Hydra ``# @package``
    directive is not one); empty where the file has none."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text.startswith("#"):
            return ""
        text = text.lstrip("#").strip()
        if text and not text.startswith("@package"):
            return text
    return ""


def missing_descriptions(conf: Path = CONF) -> list[Path]:
    """The config files without a description (the docs' tables would show a blank)."""
    return [p for p in sorted(conf.rglob("*.yaml")) if not description(p)]


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _settings(data: Any) -> str:
    """An option's settings as ``key=value`` (nested keys dotted), ``_target_`` and the
    defaults list left out."""
    items: list[str] = []

    def walk(node: Any, prefix: str) -> None:
        for key, value in node.items():
            if key in ("defaults", "_target_", "_partial_", "hydra") or not isinstance(key, str):
                continue
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                shown = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
                items.append(f"`{prefix}{key}={shown}`")

    if isinstance(data, dict):
        walk(data, "")
    return " ".join(items)


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return {}


def _defaults(path: Path) -> dict[str, str]:
    """``group: option`` of a primary config's defaults list (``optional`` and ``override``
    entries, ``_self_`` and the schema left out)."""
    chosen = {}
    for entry in _load(path).get("defaults") or []:
        if isinstance(entry, dict):
            for key, value in entry.items():
                key = str(key).removeprefix("override ").strip()
                if not key.startswith("optional") and "@" not in key:
                    chosen[key] = "null" if value is None else str(value)
    return chosen


def _group_table(conf: Path, group: str, default: str | None) -> list[str]:
    folder = conf / group
    rows = ["| option | description | settings |", "|---|---|---|"]
    for path in sorted(folder.glob("*.yaml")):
        name = f"`{path.stem}`" + (" (default)" if path.stem == default else "")
        rows.append(f"| {name} | {_cell(description(path))} | {_cell(_settings(_load(path)))} |")
    return rows


def _experiments(conf: Path) -> list[str]:
    rows = ["| `experiment=` | description | chooses | sets |", "|---|---|---|---|"]
    for path in sorted((conf / "experiment").glob("*.yaml")):
        data = _load(path)
        chooses = " ".join(f"`{str(k).removeprefix('override ').lstrip('/')}={v}`"
                           for entry in data.get("defaults") or [] if isinstance(entry, dict) for k, v in entry.items())
        sweeps = ((data.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
        sets = _settings(data) + "".join(f" sweeps `{k}={v}`" for k, v in sweeps.items())
        rows.append(f"| `{path.stem}` | {_cell(description(path))} | {_cell(chooses)} | {_cell(sets)} |")
    return rows


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")


def _keys(path: Path) -> list[str]:
    """A primary config's own keys (not its defaults list, not ``hydra:``), dotted, with
    their values and the comment on their line."""
    rows = ["| key | default | what it does |", "|---|---|---|"]
    stack: list[tuple[int, str]] = []
    skip_below: int | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _KEY.match(line)
        if not m or line.lstrip().startswith("-"):
            continue
        indent, key, value = len(m["indent"]), m["key"], m["value"].strip()
        if skip_below is not None and indent > skip_below:
            continue
        skip_below = None
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if key in ("defaults", "hydra") and indent == 0:
            skip_below = indent
            continue
        dotted = ".".join([k for _, k in stack] + [key])
        if value:
            rows.append(f"| `{dotted}` | `{_cell(value)}` | {_cell(m['comment'] or '')} |")
        else:
            stack.append((indent, key))
    return rows


def configuration_page(conf: Path = CONF) -> str:
    """The generated reference of conf/: groups, options, presets, keys."""
    out = ["# Configuration reference", "",
           "Generated from `conf/` when the docs are built: every config group and option (its description is the "
           "first comment line of its file), every experiment preset, and the keys of the three primary configs. "
           "Pick an option with `group=option` and set a value with `key=value` on any command line; "
           "[Configuration](../configuration.md) explains how they compose.", ""]
    groups_done: set[str] = set()
    for config, script in PRIMARY.items():
        chosen = _defaults(conf / f"{config}.yaml")
        out += [f"## `{script}` ({config}.yaml)", "", f"{description(conf / f'{config}.yaml')}", ""]
        for group, default in chosen.items():
            if group in ("hydra", "hydra/job_logging", "hydra/sweeper") or group.endswith("_schema") \
                    or group == "experiment" or not (conf / group).is_dir() or group in groups_done:
                continue
            groups_done.add(group)
            out += [f"### `{group}`", ""]
            out += _group_table(conf, group, default) + [""]
        out += [f"### Keys of `{config}.yaml`", ""] + _keys(conf / f"{config}.yaml") + [""]
    out += ["## Experiment presets (`experiment=`)", "",
            "Each is a `# @package _global_` delta over `train.yaml`: the groups it chooses and the values it sets; "
            "anything on the command line comes after it.", ""] + _experiments(conf) + [""]
    out += ["## Groups picked by other settings", ""]
    for group, how in AUTOMATIC.items():
        if (conf / group).is_dir():
            out += [f"### `{group}`", "", how, ""] + _group_table(conf, group, None) + [""]
    for group, own in HYDRA_OWN.items():
        if (conf / group).is_dir():
            out += [f"### `{group}`", "", own, ""] + _group_table(conf, group, None) + [""]
    return "\n".join(out)


def api_pages(package: Path = PACKAGE) -> dict[str, str]:
    """``reference/api/<package>.md`` for ``sat`` and each of its packages: a
    mkdocstrings block per module (its docstring and public members)."""
    pages = {}
    for init in sorted(package.rglob("__init__.py")):
        folder = init.parent
        dotted = ".".join(folder.relative_to(package.parent).parts)
        modules = [dotted] + [f"{dotted}.{p.stem}" for p in sorted(folder.glob("*.py"))
                              if p.stem not in ("__init__", "__main__")]
        body = [f"# `{dotted}`", ""]
        for module in modules:
            body += [f"::: {module}", "    options:", "      heading_level: 2", ""]
        pages[f"reference/api/{dotted}.md"] = "\n".join(body)
    index = ["# API reference", "", "Generated from the docstrings of every package of `sat` when the docs are built. "
             "The entry points for a user are `sat.api` (`sat.train`, `sat.evaluate`, `sat.attack`) and "
             "`sat.errors`; for extending the framework, `sat.methods.base.Method`, `sat.data.datasets.DataSource` "
             "and `sat.tasks.evaluate.base.Report`.", "", "| package | what it holds |", "|---|---|"]
    for path in sorted(pages):
        dotted = path.removeprefix("reference/api/").removesuffix(".md")
        doc = _first_line_of_docstring(package.parent / dotted.replace(".", "/") / "__init__.py")
        index.append(f"| [`{dotted}`]({dotted}.md) | {_cell(doc)} |")
    pages["reference/api/index.md"] = "\n".join(index) + "\n"
    return pages


def _first_line_of_docstring(path: Path) -> str:
    import ast

    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.split("\n\n")[0].replace("\n", " ")


_LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")


SITE_PAGES = {"CHANGELOG.md": "changelog.md"}  # files of the repository's root that the site holds too


def as_site_page(text: str) -> str:
    """A Markdown file of the repository's root as a page of the site: links into
    ``docs/`` become the site's pages, links to the files the site holds become theirs,
    links to other files of the repository become their paths in code."""
    def link(m: re.Match) -> str:
        label, target = m[1], m[2]
        if target.startswith(("http://", "https://", "#")):
            return m[0]
        if target.startswith("docs/"):
            return f"[{label}]({target.removeprefix('docs/')})"
        if target in SITE_PAGES:
            return f"[{label}]({SITE_PAGES[target]})"
        return f"{label} (`{target}`)"

    return _LINK.sub(link, text)


# --- the MkDocs hook ---------------------------------------------------------------------


def on_config(config: Any) -> Any:
    """The navigation's ``API`` entry becomes the API index and a page per package."""
    pages = sorted(p for p in api_pages() if p != "reference/api/index.md")
    api = [{"Overview": "reference/api/index.md"}] + [{p.removeprefix("reference/api/").removesuffix(".md"): p}
                                                       for p in pages]

    def fill(items: list) -> None:
        for item in items:
            if isinstance(item, dict):
                for key, value in item.items():
                    if value == "reference/api/index.md" and key == "API":
                        item[key] = api
                    elif isinstance(value, list):
                        fill(value)

    fill(config["nav"] or [])
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    generated = {"reference/configuration.md": configuration_page(), **api_pages(),
                 "index.md": as_site_page((ROOT / "README.md").read_text(encoding="utf-8")),
                 **{page: as_site_page((ROOT / name).read_text(encoding="utf-8")) for name, page in SITE_PAGES.items()}}
    for path, content in generated.items():
        existing = files.get_file_from_path(path)
        if existing is not None:
            files.remove(existing)
        files.append(File.generated(config, path, content=content))
    return files


if __name__ == "__main__":
    print(configuration_page())
