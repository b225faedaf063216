"""The error answers of the local Data API endpoint, as botocore's
``rds-data`` model defines them: the HTTP status, the code (sent in the
``x-amzn-ErrorType`` header and the body) and a message."""

from __future__ import annotations

from typing import Final

#: HTTP status per error code (botocore's service model).
STATUS: Final = {
    "AccessDeniedException": 403,
    "BadRequestException": 400,
    "DatabaseErrorException": 400,
    "DatabaseNotFoundException": 404,
    "DatabaseResumingException": 400,
    "DatabaseUnavailableException": 504,
    "ForbiddenException": 403,
    "HttpEndpointNotEnabledException": 400,
    "InternalServerErrorException": 500,
    "InvalidResourceStateException": 400,
    "InvalidSecretException": 400,
    "NotFoundException": 404,
    "SecretsErrorException": 400,
    "ServiceUnavailableError": 503,
    "StatementTimeoutException": 400,
    "ThrottlingException": 400,
    "TransactionNotFoundException": 404,
    "UnsupportedResultException": 400,
    "UnknownOperationException": 404,
}

#: What the endpoint answers while paused (the shape's documentation).
RESUMING_MESSAGE: Final = (
    "The request was cancelled because the Aurora Serverless v2 DB instance is paused. "
    "The Data API request automatically resumes the DB instance. Wait a few seconds and "
    "try again."
)


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return STATUS.get(self.code, 400)


def database_error(message: str, sqlstate: str | None) -> ApiError:
    """A ``DatabaseErrorException`` carrying PostgreSQL's message and, as the
    Data API relays it, its SQLSTATE."""
    if sqlstate:
        message = f"{message}; SQLState: {sqlstate}"
    return ApiError("DatabaseErrorException", message)
