"""`chamados`: run, migrate and administer the services.

    chamados up                       migrate, start all six services, create the first admin
    chamados run SERVICE              one service in this process (what `up` starts)
    chamados migrate                  upgrade every schema; declare the bus's durable queues
    chamados revision SERVICE -m MSG  autogenerate a migration from the service's tables
    chamados create-admin             ensure the first admin (services must be running)
    chamados reset-password EMAIL     a person's new password, every session of theirs ended
                                      (straight on the database: services running or not)
    chamados settings --markdown      README's settings table, from the declarations
    chamados dlq list [--queue Q] [--reason R] [--limit N]
                                      the dead-letter queue, oldest first (nothing is taken)
    chamados dlq show ID              one parked message: headers, properties, body
    chamados dlq replay (ID... | --queue Q [--reason R] | --all)
                                      back onto their original queue (confirmed, then dropped)
    chamados dlq purge (ID... | --queue Q [--reason R] | --all)
                                      drop parked messages for good
"""
import warnings

warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything imports sockets, threads or time

import argparse  # noqa: E402
import sys  # noqa: E402

from common import bootstrap  # noqa: E402

bootstrap.install()  # the library patches, before anything loads psycopg

from common.config import (  # noqa: E402
    SERVICE_NAMES, ConfigError, settings_from_env, settings_table)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="chamados", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("up", help="migrate, run every service, create the first admin")
    run = commands.add_parser("run", help="run one service in this process")
    run.add_argument("service", choices=SERVICE_NAMES)
    commands.add_parser("migrate", help="upgrade every service's schema")
    revision = commands.add_parser("revision", help="autogenerate a migration")
    revision.add_argument("service", choices=("accounts", "tickets", "devices"))
    revision.add_argument("-m", "--message", required=True)
    commands.add_parser("create-admin", help="ensure the first admin of the default tenant")
    reset = commands.add_parser(
        "reset-password", help="give a person a new password and end their sessions",
        description="A person's new password, every session of theirs ended; straight on the "
                    "accounts database, so it works whether or not the services run. The "
                    "password comes from --password-file, else CHAMADOS_NEW_PASSWORD, else one "
                    "is generated and printed once.")
    reset.add_argument("email")
    reset.add_argument("--tenant", metavar="SLUG",
                       help="the tenant's slug, when the email is a person in several")
    reset.add_argument("--password-file", metavar="FILE",
                       help="read the new password from FILE ('-': standard input)")
    listing = commands.add_parser("settings", help="README's table of every setting (common/config.py)")
    listing.add_argument("--markdown", action="store_true", required=True,
                         help="print it in Markdown, as README.md holds it")
    from chamados import dlq

    dlq.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "settings":  # the declarations alone: no environment needed
        print(settings_table(), end="")
        return 0

    try:
        settings = settings_from_env()
    except ConfigError as exc:
        print(f"chamados: configuration error: {exc}", file=sys.stderr)
        return 2

    if args.command == "run":
        from chamados.runner import run as run_service

        run_service(args.service)
    elif args.command == "migrate":
        from chamados.supervisor import prepare

        prepare(settings)
    elif args.command == "revision":
        from common.migrate import make_revision

        make_revision(settings, args.service, args.message)
    elif args.command == "create-admin":
        from chamados.supervisor import create_admin

        return create_admin(settings)
    elif args.command == "reset-password":
        from chamados.supervisor import reset_password

        return reset_password(settings, args.email, args.tenant, args.password_file)
    elif args.command == "dlq":
        return dlq.run(settings, args)
    elif args.command == "up":
        from chamados.supervisor import up

        return up(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
