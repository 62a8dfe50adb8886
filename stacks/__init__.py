"""Deployable stacks. Each composes constructs from `platform_constructs`."""
