"""``oms apikey create|list|revoke``, and the developer key that ``make run`` prints.

The gateway owns the API key table, so it owns the commands that manage it: this typer sub-app is declared in
the gateway's manifest (``cli``) and mounted by ``oms`` from the registry, which therefore never imports the
gateway's modules. ``oms run`` gets the developer key through ``oms apikey dev-key``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="apikey",
    help="Manage API keys (stored hashed; the key itself is shown once).",
    no_args_is_help=True,
)
console = Console()

DEV_KEY_NAME = "local-development"
DEV_KEY_FILE = "dev-api-key"  # in OMS_STATE_DIR; `oms demo` and `oms bench` read it


def _connect() -> Any:
    import psycopg

    from shared.config import get_settings

    return psycopg.connect(get_settings().database_url, autocommit=True)


@app.command("create")
def create(name: Annotated[str, typer.Argument(help="Who or what uses the key, e.g. 'shop-frontend'.")]) -> None:
    """Create an API key and print it (only now: it is stored as a hash)."""
    from services.gateway.auth import create_api_key

    with _connect() as conn:
        key_id, plaintext = create_api_key(conn, name)
    console.print(f"created key [bold]{name}[/] ({key_id}):")
    print(plaintext)


@app.command("list")
def list_keys() -> None:
    """List API keys (name, prefix, created, last used, revoked)."""
    from services.gateway.auth import list_api_keys

    with _connect() as conn:
        keys = list_api_keys(conn)
    table = Table("id", "name", "prefix", "created", "last used", "status")
    for k in keys:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d}",
        )
    console.print(table)


@app.command("revoke")
def revoke(key: Annotated[str, typer.Argument(help="Key id, prefix, or the key itself.")]) -> None:
    """Revoke a key: requests with it are refused (within 30 s on every gateway)."""
    from services.gateway.auth import revoke_api_key

    with _connect() as conn:
        if not revoke_api_key(conn, key):
            console.print(f"[red]no active key matches {key!r}[/]")
            raise typer.Exit(1)
    console.print("revoked.")


def _dev_key_file(settings: Any) -> Path:
    return Path(settings.state_dir) / DEV_KEY_FILE


def ensure_dev_key(settings: Any) -> str:
    """Reuse the saved developer key while it is still valid in this database; otherwise make a new one.

    Kept in OMS_STATE_DIR (mode 0600, git-ignored) so that every ``make run`` prints a key that works.
    """
    from services.gateway.auth import create_api_key, hash_key, parse_prefix

    path = _dev_key_file(settings)
    with _connect() as conn:
        if path.exists():
            key = path.read_text().strip()
            prefix = parse_prefix(key)
            row = conn.execute(
                "SELECT key_hash FROM gateway.api_keys WHERE prefix = %s AND revoked_at IS NULL", (prefix,)
            ).fetchone()
            if row and row[0] == hash_key(key):
                return key
        _key_id, key = create_api_key(conn, DEV_KEY_NAME)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


@app.command("dev-key", hidden=True)
def dev_key() -> None:
    """Print the developer key (``oms run`` shows it): the saved one while still valid, else a new one."""
    from shared.config import get_settings

    print(ensure_dev_key(get_settings()))
