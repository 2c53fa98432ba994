"""``make bench``: run every benchmark, print a table, write ``bench/results/*.json``."""

from __future__ import annotations

from bench import hook_cost, scrape_cost, session_cost, turn_cost


def main() -> None:
    hook_cost.main()
    session_cost.main()
    turn_cost.main()
    scrape_cost.main()


if __name__ == "__main__":
    main()
