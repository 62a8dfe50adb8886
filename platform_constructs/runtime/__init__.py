"""The code of the project's Lambda functions, one module per function.

Each module needs only the standard library, boto3 and `bertbatch_contract`: the Lambda asset
(`platform_constructs.lambda_asset`) is these modules at its root beside a copy of the contract
package, and a function's handler is `<module>.handler`.
"""
