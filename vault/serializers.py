from rest_framework import serializers

from vault.models import Credential
from vault.schemas import CATEGORY_SCHEMAS, UnknownCredential, check_value, validate_name


class CredentialSerializer(serializers.ModelSerializer):
    """The value is write-only; reads show only its masked form."""

    value = serializers.CharField(write_only=True, trim_whitespace=True, style={"input_type": "password"})
    masked_value = serializers.CharField(read_only=True)
    category = serializers.ChoiceField(
        choices=sorted(CATEGORY_SCHEMAS),
        error_messages={
            "invalid_choice": f'Unknown credential category "{{input}}". Allowed: {", ".join(sorted(CATEGORY_SCHEMAS))}.'
        },
    )

    class Meta:
        model = Credential
        fields = ["id", "category", "name", "value", "masked_value", "expires_at", "disabled_at",
                  "created_at", "updated_at", "last_used_at"]
        read_only_fields = ["disabled_at", "created_at", "updated_at", "last_used_at"]

    def validate_value(self, value):
        try:
            return check_value(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs):
        category = attrs.get("category", getattr(self.instance, "category", None))
        name = attrs.get("name", getattr(self.instance, "name", None))
        try:
            validate_name(category, name)
        except UnknownCredential as exc:
            field = "category" if category not in CATEGORY_SCHEMAS else "name"
            raise serializers.ValidationError({field: str(exc)}) from None
        return attrs
