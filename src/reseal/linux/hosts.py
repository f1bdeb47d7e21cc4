"""/etc/hosts: move the machine's own names from the old host name to the new one."""

from __future__ import annotations

from reseal.linux.names import short_name


def rename_in_hosts(text: str, old: str | None, new: str, *, add_loopback: bool) -> str:
    """Replace the old host name (and its short form) by the new one on every line.

    When no line named the old host but a `127.0.1.1` line exists (Debian's own-name line),
    that line's names are replaced; with `add_loopback` and no such line one is appended.
    """
    old_short = short_name(old).lower() if old else None

    def is_old(name: str) -> bool:
        return old_short is not None and short_name(name).lower() == old_short

    lines = text.splitlines(keepends=True)
    changed = False
    for index, line in enumerate(lines):
        body, hash_, comment = line.partition("#")
        fields = body.split()
        if len(fields) < 2 or old_short is None:
            continue
        names = fields[1:]
        olds = [n for n in names if is_old(n)]
        if not olds:
            continue
        new_names = _new_names(new, olds)
        kept = [n for n in names if not is_old(n) and n not in new_names]
        first = names.index(olds[0])
        replaced = kept[:first] + new_names + kept[first:]
        lines[index] = _format(fields[0], replaced, hash_ + comment, line)
        changed = True
    if changed:
        return "".join(lines)
    new_names = _new_names(new, [])
    for index, line in enumerate(lines):
        fields = line.partition("#")[0].split()
        if fields and fields[0] == "127.0.1.1":
            lines[index] = _format("127.0.1.1", new_names, "", line)
            return "".join(lines)
    if add_loopback:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(_format("127.0.1.1", new_names, "", "\n"))
    return "".join(lines)


def _new_names(new: str, old_names: list[str]) -> list[str]:
    """The new name first, then its short form; a domain the old FQDN had is kept."""
    if "." in new:
        return [new, short_name(new)]
    domains = [n.split(".", 1)[1] for n in old_names if "." in n]
    return [f"{new}.{domains[0]}", new] if domains else [new]


def _format(address: str, names: list[str], comment: str, original: str) -> str:
    ending = "\n" if original.endswith("\n") else ""
    comment = comment.rstrip("\n")
    text = address + "\t" + " ".join(names)
    if comment:
        text += " " + comment
    return text + ending


def hosts_names(text: str) -> set[str]:
    """Every host name /etc/hosts maps (lower case), for leftover scans."""
    names: set[str] = set()
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        names.update(n.lower() for n in fields[1:])
    return names
