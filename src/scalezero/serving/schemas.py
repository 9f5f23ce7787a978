"""Request and response bodies of the OpenAI routes, and the body an instance receives.

Every request field of OpenAI's completions and chat completions APIs is declared here
and is either honoured (forwarded, translated for the engine, or acted on by the gateway)
or refused with a 400 that names it; fields OpenAI does not define are refused too, as
OpenAI does, except llama.cpp's own sampling fields. docs/api.md has the table. Ranges
follow the OpenAI API reference; anything outside them is the client's error (400), never
an instance's crash.

Wire shapes that are unions (``prompt``: a string or a list of one; ``content``: a string
or a list of parts; ``stop``: a string or a list) are normalised by before-validators, so
that an error names the field and not a branch of a union; the OpenAPI schema still
shows the union (``WithJsonSchema``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 200
MAX_PROMPT_CHARS = 200_000
MAX_MESSAGES = 256
MAX_TOOLS = 128
MAX_LOGIT_BIAS = 1024
#: Largest seed: llama.cpp's seed is 32-bit unsigned, and 0xFFFFFFFF means "random".
MAX_SEED = 2**31 - 1
#: OpenAI's bounds on log probabilities asked for.
MAX_COMPLETION_LOGPROBS = 5
MAX_TOP_LOGPROBS = 20

UNSUPPORTED = "unsupported_parameter"
INVALID = "invalid_value"


def refusal(message: str) -> PydanticCustomError:
    """A 400 for a field (or a value) the gateway does not honour; the message says why."""
    return PydanticCustomError(UNSUPPORTED, message)


def invalid(message: str) -> PydanticCustomError:
    return PydanticCustomError(INVALID, message)


def _refused(reason: str, harmless: Any = None) -> Any:
    """A field accepted only as null (or ``harmless``): other values are refused with ``reason``."""

    def check(value: Any) -> None:
        if value is not None and not (harmless is not None and value == harmless
                                      and type(value) is type(harmless)):
            raise refusal(reason)
        return None

    accepted = [{"type": "null"}] if harmless is None else [{"const": harmless}, {"type": "null"}]
    return Annotated[None, BeforeValidator(check), WithJsonSchema({"anyOf": accepted})]


# ---------------------------------------------------------------- wire shapes

_TEXT = {"type": "string", "maxLength": MAX_PROMPT_CHARS}


def _prompt(value: Any) -> str:
    if isinstance(value, list):
        if len(value) > 1:
            raise refusal("one prompt per request: send each prompt as its own request")
        if not value:
            raise invalid("prompt must not be empty")
        value = value[0]
        if isinstance(value, int | list):
            raise refusal("prompts as token ids are not supported: send the text")
    if not isinstance(value, str):
        raise invalid("prompt must be a string (or a list of one string)")
    if not value:
        raise invalid("prompt must not be empty")
    if len(value) > MAX_PROMPT_CHARS:
        raise invalid(f"prompt is longer than {MAX_PROMPT_CHARS} characters")
    return value


Prompt = Annotated[
    str,
    BeforeValidator(_prompt),
    WithJsonSchema({
        "anyOf": [
            {**_TEXT, "minLength": 1},
            {"type": "array", "items": {**_TEXT, "minLength": 1}, "minItems": 1,
             "maxItems": 1},
        ],
        "description": "The text to complete: a string, or a list holding one string.",
    }),
]


def _stop(value: Any) -> list[str] | None:
    if value is None:
        return None
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise invalid("stop must be a string or a list of strings")
    if len(stops) > MAX_STOP_SEQUENCES:
        raise invalid(f"at most {MAX_STOP_SEQUENCES} stop sequences")
    if any(not 1 <= len(s) <= MAX_STOP_CHARS for s in stops):
        raise invalid(f"stop sequences must have 1 to {MAX_STOP_CHARS} characters")
    return stops


_STOP_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_CHARS}
Stop = Annotated[
    list[str] | None,
    BeforeValidator(_stop),
    WithJsonSchema({
        "anyOf": [
            _STOP_TEXT,
            {"type": "array", "items": _STOP_TEXT, "maxItems": MAX_STOP_SEQUENCES},
            {"type": "null"},
        ],
        "description": "Up to 4 sequences where generation stops (not included in the text).",
    }),
]


def _content(value: Any) -> str | None:
    """A message's content as one string: text parts are joined with newlines."""
    if value is None:
        return value
    if isinstance(value, str):
        if len(value) > MAX_PROMPT_CHARS:
            raise invalid(f"content is longer than {MAX_PROMPT_CHARS} characters")
        return value
    if not isinstance(value, list):
        raise invalid("content must be a string or a list of content parts")
    texts = []
    for index, part in enumerate(value):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("image_url", "input_audio", "file"):
            raise refusal(
                f"part {index} is of type {kind}: the model reads text only; send text parts"
            )
        key = "refusal" if kind == "refusal" else "text"
        if kind not in ("text", "refusal") or set(part) != {"type", key} or not isinstance(
            part[key], str
        ):
            raise invalid(f"part {index} must be a text part: an object with type text and text")
        if len(part[key]) > MAX_PROMPT_CHARS:
            raise invalid(f"part {index} is longer than {MAX_PROMPT_CHARS} characters")
        texts.append(part[key])
    return "\n".join(texts)


def _part_schema(kind: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"type": {"const": kind}, kind: _TEXT},
        "required": ["type", kind],
        "additionalProperties": False,
    }


Content = Annotated[
    str | None,
    BeforeValidator(_content),
    WithJsonSchema({
        "anyOf": [
            _TEXT,
            {"type": "array", "items": {"anyOf": [_part_schema("text"),
                                                  _part_schema("refusal")]}},
            {"type": "null"},
        ],
        "description": "A string, or text parts (joined with newlines); the model reads "
        "text only, so image, audio and file parts are refused.",
    }),
]

FunctionName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


def _json_schema_object(value: Any) -> dict[str, Any]:
    # Any object: llama-cpp-python falls back to "any JSON" for a schema it cannot turn
    # into a grammar.
    if not isinstance(value, dict):
        raise invalid("must be a JSON Schema object")
    return value


JsonSchemaObject = Annotated[
    dict[str, Any],
    BeforeValidator(_json_schema_object),
    WithJsonSchema({"type": "object", "description": "A JSON Schema."}),
]

# Rules across fields, for the OpenAPI schema; the validators below enforce the same.
_PENALTY_RULE = {"not": {"required": ["repeat_penalty", "repetition_penalty"]}}
_ECHO_RULE = {"not": {"required": ["echo", "stream"],
                      "properties": {"echo": {"const": True}, "stream": {"const": True}}}}
_TOP_LOGPROBS_RULE = {
    "if": {"required": ["top_logprobs"], "properties": {"top_logprobs": {"type": "integer"}}},
    "then": {"required": ["logprobs"], "properties": {"logprobs": {"const": True}}},
}
_SOME_TOOLS = {"required": ["tools"], "properties": {"tools": {"type": "array", "minItems": 1}}}


def _rules(*rules: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"allOf": list(rules)})


def _integral(value: Any) -> Any:
    # JSON has one number type: 4.0 is the integer 4 to JSON Schema, and so here.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _whole_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


class _Strict(BaseModel):
    # Unknown fields are refused (as OpenAI does) and values are never coerced: "5" is
    # not a number and 1 is not true. NaN and Infinity (which Python's JSON reads) are
    # not numbers either.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


# ------------------------------------------------------------------- requests


class StreamOptions(_Strict):
    include_usage: bool | None = Field(
        default=None,
        description="Send a last chunk with empty choices and the request's token usage.",
    )
    include_obfuscation: bool | None = Field(
        default=None, description="Accepted; the gateway adds no obfuscation field."
    )


class SamplingFields(_Strict):
    """Fields both routes share."""

    model_config = _rules(_PENALTY_RULE)

    model: str | None = Field(
        default=None, description="Deployment to use; unset: the gateway's (only) deployment."
    )
    max_tokens: int | None = Field(
        default=None, ge=1,
        description="Most tokens to generate (deprecated for chat: max_completion_tokens).",
    )
    max_completion_tokens: int | None = Field(
        default=None, ge=1,
        description="Most tokens to generate; wins over max_tokens when both are sent.",
    )
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    stop: Stop = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = Field(
        default=None, description="Token id (in the model's vocabulary) to a bias in [-100, 100]."
    )
    n: int | None = Field(
        default=None, ge=1, le=1,
        description="Choices per request: only 1 (an instance generates one at a time).",
    )
    user: str | None = Field(default=None, max_length=256, description="Accepted; no effect.")
    # llama.cpp's own sampling fields, forwarded as they are.
    top_k: int | None = Field(default=None, ge=0, le=1000)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    min_tokens: int | None = Field(default=None, ge=0)
    repeat_penalty: float | None = Field(default=None, ge=0.0, le=10.0)
    repetition_penalty: float | None = Field(
        default=None, ge=0.0, le=10.0, description="Sent to the engine as repeat_penalty."
    )
    ignore_eos: _refused(
        "ignore_eos is not supported by the engine; use min_tokens for a minimum length",
        harmless=False,
    ) = None

    # Integer fields stay strict (no "5", no true) but take 4.0 as 4. A class validator,
    # not an annotated type: pydantic would then drop the ranges from the JSON schema.
    _integral_fields = field_validator(
        "max_tokens", "max_completion_tokens", "seed", "n", "top_k", "min_tokens", mode="before"
    )(_integral)

    @field_validator("n", mode="before")
    @classmethod
    def _one_choice(cls, value: Any) -> Any:
        if _whole_number(value) and value > 1:
            raise refusal("n > 1 is not supported: an instance generates one choice per request")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return value
        if len(value) > MAX_LOGIT_BIAS:
            raise invalid(f"at most {MAX_LOGIT_BIAS} logit_bias entries")
        for key, bias in value.items():
            if not key.isascii() or not key.isdigit() or len(key) > 9 or (
                key[0] == "0" and key != "0"
            ):
                raise invalid(f"logit_bias keys must be token ids, got {key!r}")
            if not -100.0 <= bias <= 100.0:
                raise invalid("logit_bias values must be within [-100, 100]")
        return value

    @model_validator(mode="after")
    def _one_penalty_name(self) -> SamplingFields:
        if {"repeat_penalty", "repetition_penalty"} <= self.model_fields_set:
            raise PydanticCustomError(INVALID, "send repeat_penalty or repetition_penalty, "
                                      "not both", {"field": "repetition_penalty"})
        return self

    @property
    def output_limit(self) -> tuple[str, int] | None:
        """The field that limits the output, and its value (max_completion_tokens wins)."""
        if self.max_completion_tokens is not None:
            return "max_completion_tokens", self.max_completion_tokens
        if self.max_tokens is not None:
            return "max_tokens", self.max_tokens
        return None

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def _common_engine_fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty", "seed",
                     "stop", "logit_bias", "top_k", "min_p", "min_tokens", "repeat_penalty"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.repetition_penalty is not None:
            body["repeat_penalty"] = self.repetition_penalty
        limit = self.output_limit
        if limit is not None:
            body["max_tokens"] = limit[1]
        if self.stream:
            body["stream"] = True
            if self.stream_options is not None:
                # llama-cpp-python ignores it; llama-server sends its own usage chunk.
                body["stream_options"] = self.stream_options.model_dump(exclude_none=True)
        return body


class CompletionRequest(SamplingFields):
    """``POST /v1/completions``."""

    model_config = _rules(_PENALTY_RULE, _ECHO_RULE)

    prompt: Prompt
    echo: bool | None = Field(
        default=None, description="Return the prompt before the completion (not when streaming)."
    )
    logprobs: int | None = Field(
        default=None, ge=0, le=MAX_COMPLETION_LOGPROBS,
        description="Log probabilities of the chosen and this many most likely tokens.",
    )
    best_of: int | None = Field(
        default=None, ge=1, le=1, description="Only 1 (no server-side best-of)."
    )
    suffix: _refused(
        "suffix is not supported: llama-cpp-python's infill is broken for it; put the text "
        "in the prompt"
    ) = None

    _integral_fields_completion = field_validator("logprobs", "best_of", mode="before")(_integral)

    @field_validator("best_of", mode="before")
    @classmethod
    def _one_candidate(cls, value: Any) -> Any:
        if _whole_number(value) and value > 1:
            raise refusal("best_of > 1 is not supported: an instance generates one completion")
        return value

    @model_validator(mode="after")
    def _no_streamed_echo(self) -> CompletionRequest:
        if self.echo and self.stream:
            # llama-cpp-python drops the prompt from streamed answers without a word.
            raise PydanticCustomError(
                UNSUPPORTED, "echo is not supported with stream: the engine does not stream "
                "the prompt back", {"field": "echo"},
            )
        return self

    def to_engine(self, deployment: str) -> dict[str, Any]:
        body = {"model": deployment, "prompt": self.prompt, **self._common_engine_fields()}
        if self.echo:
            body["echo"] = True
        if self.logprobs is not None:
            body["logprobs"] = self.logprobs
        return body


# ----------------------------------------------------------- chat messages


class ToolCallFunction(_Strict):
    name: FunctionName
    arguments: str = Field(max_length=MAX_PROMPT_CHARS)


class ToolCall(_Strict):
    id: str = Field(max_length=256)
    type: Literal["function"]
    function: ToolCallFunction


class ChatMessage(_Strict):
    """One message; which fields a role needs is checked below (and shown in the schema)."""

    model_config = ConfigDict(
        json_schema_extra={
            "allOf": [
                {"if": {"properties": {"role": {"const": "tool"}}},
                 "then": {"required": ["tool_call_id", "content"],
                          "properties": {"content": {"type": ["string", "array"]},
                                         "tool_call_id": {"type": "string"}}}},
                {"if": {"properties": {"role": {"const": "function"}}},
                 "then": {"required": ["name", "content"],
                          "properties": {"content": {"type": ["string", "array"]},
                                         "name": {"type": "string"}}}},
                {"if": {"properties": {"role": {"enum": ["system", "developer", "user"]}}},
                 "then": {"required": ["content"],
                          "properties": {"content": {"type": ["string", "array"]}}}},
                {"if": {"properties": {"role": {"not": {"const": "assistant"}}}},
                 "then": {"properties": {"tool_calls": {"type": "null"},
                                         "refusal": {"type": "null"}}}},
                {"if": {"properties": {"role": {"not": {"const": "tool"}}}},
                 "then": {"properties": {"tool_call_id": {"type": "null"}}}},
            ]
        }
    )

    role: Literal["system", "developer", "user", "assistant", "tool", "function"] = Field(
        description="developer is sent to the engine as system."
    )
    content: Content = None
    name: str | None = Field(default=None, max_length=256)
    tool_calls: list[ToolCall] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_call_id: str | None = Field(default=None, max_length=256)
    refusal: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS,
                                description="Accepted on assistant messages; not sent on.")
    audio: _refused("audio is not supported: the model reads text only") = None

    @model_validator(mode="after")
    def _role_fields(self) -> ChatMessage:
        role = self.role

        def wrong(field: str, message: str) -> PydanticCustomError:
            return PydanticCustomError(INVALID, message, {"field": field})

        if role in ("system", "developer", "user", "tool", "function") and self.content is None:
            raise wrong("content", f"a {role} message needs content")
        if role == "tool" and self.tool_call_id is None:
            raise wrong("tool_call_id", "a tool message needs tool_call_id")
        if role == "function" and self.name is None:
            raise wrong("name", "a function message needs name")
        for field in ("tool_calls", "refusal"):
            if role != "assistant" and getattr(self, field) is not None:
                raise wrong(field, f"only assistant messages carry {field}")
        if role != "tool" and self.tool_call_id is not None:
            raise wrong("tool_call_id", "only tool messages carry tool_call_id")
        return self

    def to_engine(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "system" if self.role == "developer" else self.role}
        # llama-cpp-python wants assistant content as a string or absent, never null.
        if self.content is not None:
            message["content"] = self.content
        if self.name is not None:
            message["name"] = self.name
        if self.tool_calls is not None:
            message["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


class FunctionDefinition(_Strict):
    name: FunctionName
    description: str | None = Field(default=None, max_length=4096)
    parameters: JsonSchemaObject | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"] = Field(description="Only function tools.")
    function: FunctionDefinition

    def to_engine(self) -> dict[str, Any]:
        tool = self.model_dump(exclude_none=True)
        # llama-cpp-python reads parameters unconditionally; OpenAI's default is none.
        tool["function"].setdefault("parameters", {"type": "object", "properties": {}})
        return tool


class NamedFunction(_Strict):
    name: FunctionName


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_NAMED_TOOL = {
    "type": "object",
    "properties": {
        "type": {"const": "function"},
        "function": {
            "type": "object",
            "properties": {"name": {"type": "string", "pattern": _FUNCTION_NAME.pattern}},
            "required": ["name"],
            "additionalProperties": False,
        },
    },
    "required": ["type", "function"],
    "additionalProperties": False,
}


def _tool_choice(value: Any) -> Any:
    if value is None or value in ("none", "auto", "required"):
        return value
    if isinstance(value, dict):
        function = value.get("function")
        if (
            set(value) == {"type", "function"} and value["type"] == "function"
            and isinstance(function, dict) and set(function) == {"name"}
            and isinstance(function["name"], str) and _FUNCTION_NAME.match(function["name"])
        ):
            return value
    raise invalid('tool_choice must be "none", "auto", "required" or an object naming a '
                  "function (type function, function.name)")


ToolChoice = Annotated[
    Literal["none", "auto", "required"] | NamedToolChoice | None,
    BeforeValidator(_tool_choice),
    WithJsonSchema({"anyOf": [{"enum": ["none", "auto", "required"]}, _NAMED_TOOL,
                              {"type": "null"}]}),
]


class JsonSchemaFormat(_Strict):
    name: FunctionName
    description: str | None = Field(default=None, max_length=4096)
    schema_: JsonSchemaObject | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    model_config = ConfigDict(json_schema_extra={
        "if": {"properties": {"type": {"const": "json_schema"}}},
        "then": {"required": ["json_schema"], "properties": {"json_schema": {"type": "object"}}},
        "else": {"properties": {"json_schema": {"type": "null"}}},
    })

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise invalid("json_schema is given with type json_schema, and only then")
        return self

    def to_engine(self) -> dict[str, Any]:
        # llama-cpp-python knows {"type": "json_object", "schema": ...} for both.
        if self.type == "json_schema" and self.json_schema is not None:
            schema = self.json_schema.schema_
            return {"type": "json_object", **({"schema": schema} if schema else {})}
        return {"type": self.type}


_NO_STORE = "stored completions are not available"


class ChatCompletionRequest(SamplingFields):
    """``POST /v1/chat/completions``."""

    model_config = _rules(
        _PENALTY_RULE,
        _TOP_LOGPROBS_RULE,
        # Tools need a tool_choice the engine can follow: none, a named function, or
        # "required" with a single tool.
        {"if": _SOME_TOOLS,
         "then": {"required": ["tool_choice"],
                  "anyOf": [{"properties": {"tool_choice": {"anyOf": [{"const": "none"},
                                                                       _NAMED_TOOL]}}},
                            {"properties": {"tool_choice": {"const": "required"},
                                            "tools": {"maxItems": 1}}}]}},
        # A tool_choice that asks for a call needs tools.
        {"if": {"required": ["tool_choice"],
                "properties": {"tool_choice": {"anyOf": [{"const": "required"},
                                                         {"type": "object"}]}}},
         "then": _SOME_TOOLS},
    )

    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    logprobs: bool | None = Field(default=None, description="Log probabilities of the tokens.")
    top_logprobs: int | None = Field(
        default=None, ge=0, le=MAX_TOP_LOGPROBS,
        description="Most likely tokens per position; needs logprobs true.",
    )
    response_format: ResponseFormat | None = None
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice = None
    parallel_tool_calls: bool | None = Field(
        default=None, description="Accepted; the engine makes one call per answer."
    )
    store: bool | None = Field(
        default=None, description="Only false: " + _NO_STORE + ".",
        json_schema_extra={"anyOf": [{"const": False}, {"type": "null"}]},
    )
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16, description="Accepted; no effect (used with store only)."
    )
    service_tier: Literal["auto", "default"] | None = Field(
        default=None, description="Accepted; one tier here."
    )
    prompt_cache_key: str | None = Field(default=None, max_length=1024,
                                         description="Accepted; no effect.")
    safety_identifier: str | None = Field(default=None, max_length=256,
                                          description="Accepted; no effect.")
    modalities: list[Literal["text"]] | None = Field(
        default=None, max_length=1, description="Only [\"text\"]."
    )
    functions: _refused("functions is deprecated and not supported; use tools") = None
    function_call: _refused("function_call is deprecated and not supported; use tool_choice") = None
    audio: _refused("audio output is not supported: the model writes text only") = None
    prediction: _refused("predicted outputs are not supported") = None
    reasoning_effort: _refused("reasoning_effort is not supported: not a reasoning model") = None
    verbosity: _refused("verbosity is not supported by this model") = None
    web_search_options: _refused("web search is not available") = None

    _integral_fields_chat = field_validator("top_logprobs", mode="before")(_integral)

    @field_validator("store", mode="before")
    @classmethod
    def _not_stored(cls, value: Any) -> Any:
        if value is True:
            raise refusal("store: " + _NO_STORE)
        return value

    @field_validator("modalities", mode="before")
    @classmethod
    def _text_only(cls, value: Any) -> Any:
        if isinstance(value, list) and any(item != "text" for item in value):
            raise refusal("only text output is supported")
        return value

    @field_validator("service_tier", mode="before")
    @classmethod
    def _one_tier(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in ("auto", "default"):
            raise refusal(f"service tier {value!r} is not available; use auto or default")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ChatCompletionRequest:
        if self.top_logprobs is not None and not self.logprobs:
            raise PydanticCustomError(INVALID, "top_logprobs needs logprobs true",
                                      {"field": "top_logprobs"})
        self._check_tools()
        return self

    def _check_tools(self) -> None:
        choice = self.tool_choice
        names = [tool.function.name for tool in self.tools or ()]
        if not names:
            if isinstance(choice, NamedToolChoice) or choice == "required":
                raise PydanticCustomError(INVALID, "tool_choice asks for a tool but no tools "
                                          "are given", {"field": "tool_choice"})
            return
        if choice in (None, "auto"):
            # The engine calls a tool only when made to (by a grammar); letting the model
            # decide is beyond it, and ignoring the tools would be silent.
            raise PydanticCustomError(
                UNSUPPORTED, "tools need tool_choice naming the function to call (or "
                "\"required\" with one tool, or \"none\"): the engine cannot decide by itself "
                "whether to call a tool", {"field": "tools"},
            )
        if choice == "required" and len(names) > 1:
            raise PydanticCustomError(
                UNSUPPORTED, "tool_choice \"required\" works with one tool only: the engine "
                "cannot choose among tools; name the function", {"field": "tool_choice"},
            )
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise PydanticCustomError(
                INVALID, f"tool_choice names {choice.function.name!r}, which is not in tools",
                {"field": "tool_choice"},
            )

    def to_engine(self, deployment: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": deployment,
            "messages": [message.to_engine() for message in self.messages],
            **self._common_engine_fields(),
        }
        if self.logprobs:
            body["logprobs"] = True
            if self.top_logprobs is not None:
                body["top_logprobs"] = self.top_logprobs
        if self.response_format is not None and self.response_format.type != "text":
            body["response_format"] = self.response_format.to_engine()
        if self.tools:
            body["tools"] = [tool.to_engine() for tool in self.tools]
            choice = self.tool_choice
            if choice == "required":  # one tool (checked above): the same as naming it
                choice = NamedToolChoice(type="function",
                                         function=NamedFunction(name=self.tools[0].function.name))
            body["tool_choice"] = choice.model_dump() if isinstance(choice, BaseModel) else choice
        return body


# ------------------------------------------------------------------ responses
# Documentation of what the routes answer (the OpenAPI schema); answers from instances
# are relayed, not re-validated.


class ErrorDetail(BaseModel):
    message: str = Field(min_length=1)
    type: str
    param: str | None
    code: str | None


class ErrorResponse(BaseModel):
    """OpenAI's error body; 5xx answers name the request id (also in ``x-request-id``)."""

    error: ErrorDetail


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    text: str
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class CompletionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class AssistantMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["assistant"]
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    message: AssistantMessage
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionResponse(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class Health(BaseModel):
    status: Literal["ok"]


class GatewayState(BaseModel):
    """Pools, instances and queues; the shape of each deployment is described in the docs."""

    t_s: float = Field(description="The gateway's monotonic clock, in seconds.")
    deployments: dict[str, dict[str, Any]]
    memory: dict[str, Any] | None = Field(
        None, description="The memory budget, when one is set: budget, use, evictions and "
        "each deployment's estimate.")
