"""Comma-separated lists on the command line (`--framework torch,jax`, `--models lenet5,resnet18`,
`--batch-sizes 1,8,64`, `--set lr=1e-3,1e-4`): one parser, so every flag refuses an empty item the same
way. `1,,2` is a typo, not a list of two: silently dropping the empty item runs less than was asked."""
from runner.errors import UserError


def items(flag: str, text: str, given: str | None = None) -> list[str]:
    """'a, b,c' -> ['a', 'b', 'c'] (stripped, in order); UserError naming the flag and what was given
    (`given`, e.g. the whole `NAME=V1,,V2`, where the list is part of a larger value) on an empty item."""
    parts = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in parts):
        raise UserError(f"{flag} {given if given is not None else text!r}: an empty value in the list")
    return parts
