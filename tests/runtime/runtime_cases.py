"""Sizes shared by the runtime tests (a plain module: conftest names are not importable reliably)."""

BATCH = 3  # odd on purpose
PROMPT_TOKENS = 37  # not divisible by KVP x block for any KVP in 1..8 and block 4 or 16
NEW_TOKENS = 8
