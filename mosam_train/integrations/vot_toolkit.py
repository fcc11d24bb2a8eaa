"""`python -m mosam_train.integrations.vot_toolkit <arguments of vot>`: the VOT toolkit's own
command line (`test`, `evaluate`, `analysis`, `report`, `pack`: the same arguments as
`vot`), without its update check.

`vot` asks GitHub for a newer toolkit version before every command
(`vot.utilities.cli.check_updates`, a 5-second request) and has no setting to skip it;
offline that request only fails (silently) after its time-out, or hangs where the network
drops packets. This entry point replaces that one function and changes nothing else.
"""

from __future__ import annotations


def no_update_check() -> tuple[bool, None]:
    """`check_updates`' answer when there is no newer version, without asking."""
    return False, None


def main() -> None:
    from vot.utilities import cli

    cli.check_updates = no_update_check
    cli.main()  # parses sys.argv and exits, as `vot` does


if __name__ == "__main__":
    main()
