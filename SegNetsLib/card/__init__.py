"""The model card: dataclasses, JSON schema, versions and card construction. No torch."""
