#!/usr/bin/env python3
"""bert-batch CDK app: load the profile's config, build the stacks, gate on cdk-nag.

The only module that reads the environment (CDK context from cdk.json and `-c key=value`).
"""

import sys

import aws_cdk as cdk

from stacks.config import ConfigError, load_config
from stacks.platform import add_compliance_checks, build_platform, offline_az_context


def main() -> None:
    app = cdk.App()
    try:
        config = load_config(app.node.get_all_context())
        for key, value in offline_az_context(config).items():
            app.node.set_context(key, value)
        build_platform(app, config)  # reads the image's recorded base digest
    except ConfigError as exc:
        # One line, no jsii stack trace: the key (or file), the bad value and what is allowed.
        print(exc, file=sys.stderr)
        sys.exit(1)
    add_compliance_checks(app, config)
    app.synth()


if __name__ == "__main__":
    main()
