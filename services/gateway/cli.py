"""``oms apikey create|list|revoke``, ``oms staff create|list|disable|password``, and the developer key and
owner that ``oms run`` prints.

The gateway owns the API key and staff tables, so it owns the commands that manage them: ``app`` (a typer app
without a name, so its two groups appear as ``oms apikey`` and ``oms staff``) is declared in the gateway's
manifest (``cli``) and mounted by ``oms`` from the registry, which therefore never imports the gateway's
modules. ``oms run`` gets the developer key through ``oms apikey dev-key`` and, in development, the developer
owner through ``oms staff dev-owner``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

apikey = typer.Typer(
    name="apikey",
    help="Manage API keys (stored hashed; the key itself is shown once).",
    no_args_is_help=True,
)
staff = typer.Typer(
    name="staff",
    help="Manage the staff who sign in to the dashboard (roles: owner, staff, viewer).",
    no_args_is_help=True,
)
console = Console()

DEV_KEY_NAME = "local-development"
DEV_KEY_FILE = "dev-api-key"  # in OMS_STATE_DIR; `oms demo` and `oms bench` read it


def _connect() -> Any:
    import psycopg

    from shared.config import get_settings

    return psycopg.connect(get_settings().database_url, autocommit=True)


@apikey.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Who or what uses the key, e.g. 'shop-frontend'.")],
    role: Annotated[str, typer.Option(help="owner, staff or viewer (what the key may do).")] = "owner",
) -> None:
    """Create an API key and print it (only now: it is stored as a hash)."""
    from services.gateway.auth import create_api_key

    try:
        with _connect() as conn:
            key_id, plaintext = create_api_key(conn, name, role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    console.print(f"created key [bold]{name}[/] ({role}, {key_id}):")
    print(plaintext)


@apikey.command("list")
def list_keys() -> None:
    """List API keys (name, prefix, created, last used, revoked)."""
    from services.gateway.auth import list_api_keys

    with _connect() as conn:
        keys = list_api_keys(conn)
    table = Table("id", "name", "prefix", "role", "created", "last used", "status")
    for k in keys:
        table.add_row(
            str(k.id),
            k.name,
            k.prefix,
            k.role,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "-",
            "active" if k.active else f"revoked {k.revoked_at:%Y-%m-%d}",
        )
    console.print(table)


@apikey.command("revoke")
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


@apikey.command("dev-key", hidden=True)
def dev_key() -> None:
    """Print the developer key (``oms run`` shows it): the saved one while still valid, else a new one."""
    from shared.config import get_settings

    print(ensure_dev_key(get_settings()))


# ------------------------------------------------------------------------------------------------ staff
def _refused(exc: Exception) -> typer.Exit:
    extra = getattr(exc, "extra", {}) or {}
    reasons = "; ".join(f"{e['field']}: {e['reason']}" for e in extra.get("errors", []))
    console.print(f"[red]{exc}[/]" + (f" ({reasons})" if reasons else ""), soft_wrap=True)
    return typer.Exit(1)


@staff.command("create")
def staff_create(
    email: Annotated[str, typer.Argument(help="The e-mail address they sign in with.")],
    name: Annotated[str, typer.Option("--name", help="Their name, as the timelines show it.")],
    role: Annotated[str, typer.Option("--role", help="owner, staff or viewer.")] = "staff",
    password: Annotated[str | None, typer.Option(
        "--password", help="At least 10 characters; left out: one is generated and printed.")] = None,
) -> None:
    """Create a staff user who can sign in to the dashboard."""
    from services.gateway.staff import create_staff, generate_password
    from shared.errors import DomainError

    chosen = password or generate_password()
    try:
        with _connect() as conn:
            user = create_staff(conn, email, name, role, chosen)
    except DomainError as exc:
        raise _refused(exc) from None
    console.print(f"created {user.role} [bold]{user.email}[/] ({user.id})", soft_wrap=True)
    if not password:
        console.print("password (shown once):", soft_wrap=True)
        print(chosen)


@staff.command("list")
def staff_list() -> None:
    """List staff users (e-mail, name, role, created, status)."""
    from services.gateway.staff import list_staff

    with _connect() as conn:
        users = list_staff(conn)
    table = Table("id", "e-mail", "name", "role", "created", "status")
    for u in users:
        table.add_row(str(u.id), u.email, u.name, u.role, f"{u.created_at:%Y-%m-%d %H:%M}",
                      "active" if u.active else f"disabled {u.disabled_at:%Y-%m-%d}")
    console.print(table)


@staff.command("disable")
def staff_disable(email: Annotated[str, typer.Argument(help="The user's e-mail address.")]) -> None:
    """Disable a staff user: they cannot sign in, and their sessions end at once."""
    from services.gateway.staff import disable_staff

    with _connect() as conn:
        if not disable_staff(conn, email):
            console.print(f"[red]no active staff user {email!r}[/]")
            raise typer.Exit(1)
    console.print("disabled.")


@staff.command("password")
def staff_password(
    email: Annotated[str, typer.Argument(help="The user's e-mail address.")],
    password: Annotated[str | None, typer.Option(
        "--password", help="At least 10 characters; left out: one is generated and printed.")] = None,
) -> None:
    """Set a staff user's password (their sessions end)."""
    from services.gateway.staff import generate_password, set_password
    from shared.errors import DomainError

    chosen = password or generate_password()
    try:
        with _connect() as conn:
            found = set_password(conn, email, chosen)
    except DomainError as exc:
        raise _refused(exc) from None
    if not found:
        console.print(f"[red]no staff user {email!r}[/]")
        raise typer.Exit(1)
    console.print("password set.")
    if not password:
        print(chosen)


DEV_OWNER_EMAIL = "owner@localhost"
DEV_OWNER_FILE = "dev-owner-password"  # in OMS_STATE_DIR, next to the developer API key


def ensure_dev_owner(settings: Any) -> tuple[str, str | None]:
    """Development: ``owner@localhost``, created with a generated password the first time (kept in
    OMS_STATE_DIR, mode 0600). Returns (e-mail, password); the password is None when the saved one no longer
    opens the account (changed on purpose: it is left alone; ``oms staff password`` resets it)."""
    from services.gateway.staff import create_staff, find_staff, generate_password, verify_password

    path = Path(settings.state_dir) / DEV_OWNER_FILE
    with _connect() as conn:
        found = find_staff(conn, DEV_OWNER_EMAIL)
        if found is not None:
            saved = path.read_text().strip() if path.exists() else ""
            return DEV_OWNER_EMAIL, saved if saved and verify_password(found[1], saved) else None
        password = generate_password()
        create_staff(conn, DEV_OWNER_EMAIL, "Local Owner", "owner", password)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return DEV_OWNER_EMAIL, password


@staff.command("dev-owner", hidden=True)
def dev_owner() -> None:
    """Print ``<e-mail> <password>`` of the developer owner (``oms run`` shows it); development only."""
    from shared.config import get_settings

    settings = get_settings()
    if settings.env != "development":
        raise typer.Exit(0)
    email, password = ensure_dev_owner(settings)
    print(f"{email} {password or '-'}")


app = typer.Typer(no_args_is_help=True)  # no name: `oms apikey ...` and `oms staff ...`
app.add_typer(apikey)
app.add_typer(staff)
