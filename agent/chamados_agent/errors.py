"""Expected failures, each with the exit code the CLI returns and a message for a person.
Anything else that escapes is a bug and keeps its traceback."""

OK = 0
FAILED = 1          # the gateway or the broker said something we cannot use; a corrupt state file
USAGE = 2           # bad arguments (argparse uses 2 as well)
NOT_REGISTERED = 3
REJECTED = 4        # wrong provisioning code, revoked or expired machine token: re-register
NOT_DELIVERED = 5   # broker/gateway unreachable: the heartbeat waits in the spool


class AgentError(Exception):
    exit_code = FAILED

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(AgentError):
    exit_code = USAGE


class NotRegistered(AgentError):
    exit_code = NOT_REGISTERED


class CredentialsRejected(AgentError):
    """The server refused who we are: nothing will work until the user re-registers."""
    exit_code = REJECTED


class Unavailable(AgentError):
    """The message was not taken (no connection, no confirm, 5xx): keep it and retry later."""
    exit_code = NOT_DELIVERED


class MessageRejected(AgentError):
    """The gateway refused this one message as malformed (400/413/422): retrying cannot help."""
