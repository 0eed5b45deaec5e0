from django.db import models

from gateway.fields import EncryptedJSONField


class Provider(models.Model):
    """An upstream account: a wire protocol, a base URL and credentials."""

    name = models.SlugField(max_length=100, unique=True)
    kind = models.CharField(max_length=32)  # a key of gateway.providers.REGISTRY
    base_url = models.CharField(max_length=500, blank=True)
    # Exactly one of: the name of an environment variable holding the key, or the key
    # encrypted at rest (gateway.secrets). Never the key in clear.
    api_key_env = models.CharField(max_length=200, blank=True)
    api_key_encrypted = models.TextField(blank=True)
    options = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    from_config = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class LanguageModel(models.Model):
    """A public model name that clients send, served by one or more deployments."""

    name = models.CharField(max_length=200, unique=True)
    mode = models.CharField(max_length=16, default="chat")  # chat | embedding
    context_window = models.IntegerField(null=True)
    # Tokens kept free for the answer when a conversation's context is assembled; null: the
    # request's max_tokens, else GATEWAY_CONTEXT_OUTPUT_RESERVE.
    output_reservation = models.IntegerField(null=True, blank=True)
    # Resilience: further attempts after a retryable failure, then these models in order.
    strategy = models.CharField(max_length=32, default="weighted")  # gateway.balance.STRATEGIES
    retries = models.PositiveSmallIntegerField(default=0)
    fallbacks = models.JSONField(default=list, blank=True)
    fallback_on = models.JSONField(default=list, blank=True)  # exhausted, context_length, ...
    # What the `auto` model may rely on; an `auto` model lists candidates and has no deployments.
    capabilities = models.JSONField(default=list, blank=True)  # tools, vision, json
    tier = models.PositiveSmallIntegerField(null=True, blank=True)  # 1 simple .. 3 complex
    auto_candidates = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    from_config = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Deployment(models.Model):
    model = models.ForeignKey(LanguageModel, on_delete=models.CASCADE, related_name="deployments")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="deployments")
    upstream_model = models.CharField(max_length=200)
    weight = models.PositiveIntegerField(default=1)
    timeouts = models.JSONField(default=dict, blank=True)  # seconds: gateway.catalog.Timeouts
    enabled = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model", "provider", "upstream_model"], name="deployment_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_id} -> {self.provider_id}/{self.upstream_model}"


class RoutingRule(models.Model):
    """Evaluated in `position` order before a chat request is served; the first that holds
    picks the model (`route_to`) and/or pins one of its deployments."""

    name = models.SlugField(max_length=100, unique=True)
    position = models.PositiveIntegerField(default=0)
    when = models.JSONField(default=dict, blank=True)  # conditions: gateway.rules.CONDITIONS
    route_to = models.CharField(max_length=200, blank=True)
    deployment = models.CharField(max_length=400, blank=True)  # provider/upstream_model
    enabled = models.BooleanField(default=True)
    from_config = models.BooleanField(default=False)

    def __str__(self) -> str:
        return self.name


class CachePolicy(models.Model):
    """How answers are cached for a product and/or a public model (blank: any).

    The most specific policy wins: the caller's product and the model, then the product, then
    the model, then the operator's default (`GATEWAY_CACHE_*` settings).
    """

    class Mode(models.TextChoices):
        OFF = "off", "Off"
        EXACT = "exact", "Exact"
        SEMANTIC = "semantic", "Exact and semantic"

    class Scope(models.TextChoices):
        TENANT = "tenant", "Tenant"
        KEY = "key", "API key"
        USER = "user", "End user"

    class Cacheable(models.TextChoices):
        DETERMINISTIC = "deterministic", "Temperature 0, or the request opts in"
        ALWAYS = "always", "Every request"
        OPT_IN = "opt_in", "Only requests that opt in"

    product = models.ForeignKey(
        "portal.Product",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="cache_policies",
    )
    model_name = models.CharField(max_length=200, blank=True)
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.EXACT)
    cacheable = models.CharField(
        max_length=16, choices=Cacheable.choices, default=Cacheable.DETERMINISTIC
    )
    scope = models.CharField(max_length=16, choices=Scope.choices, default=Scope.TENANT)
    ttl_seconds = models.PositiveIntegerField(default=3600)
    similarity_threshold = models.FloatField(null=True, blank=True)  # blank: the default
    max_entries = models.PositiveIntegerField(default=10_000)  # per namespace, semantic index
    embedding_model = models.CharField(max_length=200, blank=True)  # blank: local MiniLM
    hit_price_usd = models.DecimalField(  # what a hit costs the tenant; blank: nothing
        max_digits=12, decimal_places=6, null=True, blank=True
    )
    from_config = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["product", "model_name"],
                condition=models.Q(product__isnull=False),
                name="cache_policy_once_per_product",
            ),
            models.UniqueConstraint(
                fields=["model_name"],
                condition=models.Q(product__isnull=True),
                name="cache_policy_once_per_model",
            ),
        ]

    def __str__(self) -> str:
        product = self.product.slug if self.product_id else "*"
        return f"cache {product}/{self.model_name or '*'}: {self.mode}"


class Conversation(models.Model):
    """Server-side conversation state: its items in order, how each turn's context is built
    (`strategy`), and the rolling summary of what no longer fits in the model's window."""

    public_id = models.CharField(max_length=64, unique=True)  # conv_...
    tenant_id = models.BigIntegerField(db_index=True)
    api_key_id = models.BigIntegerField(null=True)
    strategy = models.CharField(max_length=64, default="truncate")  # see gateway.context
    summarizer_model = models.CharField(max_length=200, blank=True)
    # Items with seq < window_from are out of the window: summarised (summarize) or left to
    # retrieval. It moves in steps, so the prefix sent upstream stays stable between turns.
    window_from = models.IntegerField(default=0)
    summary = models.TextField(blank=True)
    summary_tokens = models.IntegerField(default=0)
    next_seq = models.IntegerField(default=0)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField(null=True, db_index=True)  # the tenant's retention

    def __str__(self) -> str:
        return self.public_id


class ConversationItem(models.Model):
    """One message of a conversation, as the internal model (gateway.schemas.Message)."""

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="items")
    seq = models.IntegerField()
    public_id = models.CharField(max_length=64)  # msg_... / fc_...
    message = EncryptedJSONField()  # encrypted at rest (gateway/fields.py)
    tokens = models.IntegerField()
    pinned = models.BooleanField(default=False)  # always sent, whatever the strategy
    response_id = models.CharField(max_length=64, blank=True)  # the response that added it
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="conversation_item_once")
        ]
        ordering = ["seq"]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq}"


class StoredResponse(models.Model):
    """A Responses API response: its conversation holds its input and output items."""

    public_id = models.CharField(max_length=64, unique=True)  # resp_...
    tenant_id = models.BigIntegerField(db_index=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="responses"
    )
    input_from = models.IntegerField()  # its input items: seq input_from .. output_from - 1
    output_from = models.IntegerField()
    upto = models.IntegerField()  # next_seq after its output: a continuation starts here
    body = EncryptedJSONField()  # the Response object as returned; encrypted at rest
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.public_id


class ContextDocument(models.Model):
    """Text a tenant attached for retrieval: to one conversation, or tenant-wide (null)."""

    tenant_id = models.BigIntegerField(db_index=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, related_name="documents"
    )
    public_id = models.CharField(max_length=64, unique=True)  # doc_...
    title = models.CharField(max_length=300, blank=True)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.public_id


class ContextChunk(models.Model):
    """A passage of a conversation item or a document, embedded for retrieval."""

    tenant_id = models.BigIntegerField(db_index=True)
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, null=True, related_name="chunks"
    )
    document = models.ForeignKey(
        ContextDocument, on_delete=models.CASCADE, null=True, related_name="chunks"
    )
    item_seq = models.IntegerField(null=True)  # the conversation item it comes from
    text = models.TextField()
    tokens = models.IntegerField()
    vector = models.BinaryField()  # float32, L2-normalised
    embedding_model = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.text[:60]


class ContextAssembly(models.Model):
    """What one turn sent upstream and why: for the portal's conversation inspector."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="assemblies"
    )
    request_id = models.CharField(max_length=128)
    first_new_seq = models.IntegerField()  # the turn's own input starts here
    model = models.CharField(max_length=200)
    budget = models.IntegerField(null=True)  # tokens the context may take; null: no window
    blocks = models.JSONField()  # [{kind, tokens, seqs | chunks | text}], in the order sent
    total_tokens = models.IntegerField()
    tokens_without_strategy = models.IntegerField()  # the whole conversation, as it would cost
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.conversation_id}@{self.first_new_seq}"


class GuardrailPolicy(models.Model):
    """Checks run on what a request sends and on what the model answers.

    Operator policies are a floor: every request gets their checks. On top, the most specific
    of the caller's key, product and tenant policies applies. `checks` is a list of
    {check: pii|injection|moderation, stage: input|output|both, action: block|redact|flag, ...}
    (gateway.guardrails.policy validates and compiles it).
    """

    class Scope(models.TextChoices):
        OPERATOR = "operator", "Operator floor"
        TENANT = "tenant", "Tenant"
        PRODUCT = "product", "Product"
        KEY = "key", "API key"

    name = models.SlugField(max_length=100)
    scope = models.CharField(max_length=16, choices=Scope.choices)
    tenant = models.ForeignKey(
        "portal.Tenant", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    product = models.ForeignKey(
        "portal.Product", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(
        "portal.ApiKey", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    checks = models.JSONField(default=list)
    enabled = models.BooleanField(default=True)
    from_config = models.BooleanField(default=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["scope", "name"], name="guardrail_policy_name_once")
        ]

    def __str__(self) -> str:
        return f"{self.scope}:{self.name}"
