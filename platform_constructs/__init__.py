"""Reusable constructs.

Named `platform_constructs`, not `constructs`: a local `constructs` package would shadow the
`constructs` library that every CDK import needs.
"""
