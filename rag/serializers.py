from rest_framework import serializers

from rag.models import Collection, RAGDocument


class DocumentOutput(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.username", default=None, read_only=True)

    class Meta:
        model = RAGDocument
        fields = [
            "id", "filename", "collection", "status", "error", "chunk_count", "content_hash", "person",
            "embedding_model", "embedding_dims", "uploaded_by", "created_at", "updated_at",
        ]
        read_only_fields = fields


class UploadInput(serializers.Serializer):
    file = serializers.FileField(allow_empty_file=True, use_url=False)
    collection = serializers.ChoiceField(
        choices=[Collection.GENERAL, Collection.ADN_PERSONAL], default=Collection.GENERAL
    )
    person = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)


class SearchInput(serializers.Serializer):
    query = serializers.CharField(allow_blank=True, trim_whitespace=True, max_length=4000)
    collection = serializers.ChoiceField(choices=Collection.values, required=False, allow_null=True)
    k = serializers.IntegerField(min_value=1, max_value=50, default=5)


class SearchHit(serializers.Serializer):
    content = serializers.CharField()
    score = serializers.FloatField()
    collection = serializers.CharField()
    chunk_index = serializers.IntegerField()
    document = serializers.DictField()
