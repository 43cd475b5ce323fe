"""Validates an OpenAPI document (JSON on standard input) with the reference validator.

Exit 0 and print the detected version when valid; exit 1 with the first error otherwise."""

import json
import sys

from openapi_spec_validator import validate
from openapi_spec_validator.versions import consts, get_spec_version

spec = json.load(sys.stdin)
try:
    version = get_spec_version(spec)
    validate(spec)
except Exception as error:  # the validator's errors have several classes; all mean "invalid"
    print(f"invalid: {error}", file=sys.stderr)
    sys.exit(1)
print(version)
