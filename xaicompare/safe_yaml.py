"""YAML for study files: safe types only, no duplicate keys, no alias bombs.

PyYAML's safe_load lets a repeated key silently win over the first one, and expands aliases
without limit: nine nested lists of nine aliases (a "billion laughs") make a few hundred
bytes of YAML into 387 million nodes. A study file is small and written by hand, so both are
refused wherever they occur in the document, with the line they are on.
"""

from __future__ import annotations

import yaml

from .errors import UserError

MAX_ALIASES = 100  # alias uses (*name) in one document
MAX_NODES = 100_000  # nodes after expanding every alias; a large study file has ~1000


class StrictSafeLoader(yaml.SafeLoader):
    def compose_document(self):
        node = super().compose_document()
        _check_expansion(node)
        return node

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases = getattr(self, "aliases", 0) + 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise UserError(f"line {mark.line + 1}: more than {MAX_ALIASES} YAML aliases "
                                "(*name); a study file needs few: write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may override
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader names it below
                continue
            if first is not None:
                raise UserError(f"line {line}: duplicate key {key!r} (first on line {first}); "
                                "each key may appear once")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expansion(root) -> None:
    """Count nodes as if every alias were expanded (memoised: linear in the document)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            line = node.start_mark.line + 1
            raise UserError(f"line {line}: a YAML alias refers to the node containing it "
                            "(a recursive structure); write the values out")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        active.discard(key)
        sizes[key] = total
        if total > MAX_NODES:
            raise UserError(f"line {node.start_mark.line + 1}: YAML aliases expand to more "
                            f"than {MAX_NODES} values (an alias bomb?); write the values out")
        return total

    if root is not None:
        size(root)


def load_yaml(text: str):
    """The document in `text` (safe types), or a UserError for duplicate keys, alias bombs
    and invalid YAML."""
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise UserError(f"not valid YAML: {' '.join(str(err).split())}") from None
    except RecursionError:
        raise UserError("YAML nested too deeply; a study file needs a few levels") from None
