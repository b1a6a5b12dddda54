#!/usr/bin/env bash
# The long-polling demo in one terminal: enqueue a command for an agent with the seed's curl
# request, then poll the dashboard until the command is final and print its result.
#
# Start a dashboard and an agent first, e.g. in another terminal:
#   deno task start                       # `status up`: dev-mode dashboard + agent test-agent
# or
#   deno task serve                       # a dev-mode dashboard on http://localhost:5000
#   deno task agent --agent-id test-agent # an agent polling it
#
# Then:
#   bash examples/long_poll_demo.sh
#   COMMAND='uname -a' bash examples/long_poll_demo.sh
#
# Environment:
#   DASHBOARD_URL     dashboard base URL             (default http://localhost:5000)
#   AGENT_ID          agent that runs the command    (default test-agent)
#   COMMAND           command line to run            (default "echo Hello from dashboard")
#   COMMAND_ID        command id                     (default demo-<time>-<pid>, unique per run)
#   STATUS_ADMIN_TOKEN  when set, enqueue as an operator (agent_id in the body) and read results
#                     with it; unset works against a dev-mode dashboard, like the seed's curl
#   WAIT_SECS         give up after this many seconds (default 60)
#
# Uses curl, and jq when it is installed (without jq the raw JSON is printed).
# Exit code: 0 when the command succeeded, 1 when it ended otherwise (or the dashboard has no such
# command, or gave no final result in time), 2 on bad settings (the dashboard refusing the token:
# 401, 403) or when the dashboard cannot be reached.
set -euo pipefail

DASHBOARD_URL="${DASHBOARD_URL:-http://localhost:5000}"
DASHBOARD_URL="${DASHBOARD_URL%/}"
AGENT_ID="${AGENT_ID:-test-agent}"
COMMAND="${COMMAND:-echo Hello from dashboard}"
COMMAND_ID="${COMMAND_ID:-demo-$(date +%s)-$$}"
WAIT_SECS="${WAIT_SECS:-60}"
ADMIN_TOKEN="${STATUS_ADMIN_TOKEN:-}"

die() {
  printf 'long_poll_demo: %s\n' "$*" >&2
  exit 2
}

command -v curl >/dev/null 2>&1 || die "curl is required"
have_jq=false
if command -v jq >/dev/null 2>&1; then have_jq=true; fi

[[ "$AGENT_ID" =~ ^[A-Za-z0-9._:-]{1,128}$ ]] || die "AGENT_ID must be 1-128 characters of A-Za-z0-9._:-, got '$AGENT_ID'"
[[ "$COMMAND_ID" =~ ^[A-Za-z0-9._:-]{1,128}$ ]] || die "COMMAND_ID must be 1-128 characters of A-Za-z0-9._:-, got '$COMMAND_ID'"
[[ "$WAIT_SECS" =~ ^[0-9]+$ ]] || die "WAIT_SECS must be a whole number, got '$WAIT_SECS'"

# Escape a string for a JSON string literal (backslash, quote, control characters).
json_string() {
  if $have_jq; then
    jq -Rn --arg s "$1" '$s'
  else
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    printf '"%s"' "$s"
  fi
}

# Extract a top-level string field from a JSON object without jq (good enough for status/id).
json_field() {
  local json=$1 field=$2
  if $have_jq; then
    jq -r --arg f "$field" '.[$f] // empty' <<<"$json"
  else
    sed -n "s/.*\"$field\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" <<<"$json" | head -n 1
  fi
}

# What to do about a refused token (HTTP 401 or 403), said after the dashboard's own reason.
auth_hint() {
  if [[ -n "$ADMIN_TOKEN" ]]; then
    printf 'is STATUS_ADMIN_TOKEN the dashboard'"'"'s admin token?'
  else
    printf 'outside dev mode set STATUS_ADMIN_TOKEN to the dashboard'"'"'s admin token'
  fi
}

# The dashboard's error sentence of an answer, or the answer itself (cut short).
error_of() {
  local said
  said=$(json_field "$1" error 2>/dev/null || true)
  [[ -n "$said" ]] || said=${1:0:200}
  printf '%s' "${said:-no answer body}"
}

auth_args=()
if [[ -n "$ADMIN_TOKEN" ]]; then
  # The header is read from a file of our own (curl -H @file): on curl's command line the token
  # would be in the process list, which every local user can read, for as long as it polls.
  auth_file=$(mktemp)
  trap 'rm -f "$auth_file"' EXIT
  printf 'Authorization: Bearer %s\n' "$ADMIN_TOKEN" >"$auth_file"
  auth_args=(-H "@$auth_file")
  body="{\"id\":\"$COMMAND_ID\",\"name\":$(json_string "$COMMAND"),\"params\":{},\"agent_id\":\"$AGENT_ID\"}"
  enqueue_headers=("${auth_args[@]}")
else
  body="{\"id\":\"$COMMAND_ID\",\"name\":$(json_string "$COMMAND"),\"params\":{}}"
  enqueue_headers=(-H "X-Agent-Id: $AGENT_ID")
fi

printf '==> enqueue %s for agent %s: %s\n' "$COMMAND_ID" "$AGENT_ID" "$COMMAND" >&2
# The seed's request:
#   curl -X POST http://localhost:5000/api/v1/agent/commands/enqueue \
#     -H 'Content-Type: application/json' -H 'X-Agent-Id: test-agent' \
#     -d '{"id":"cmd-001","name":"echo Hello from dashboard","params":{}}'
if ! answer=$(curl -sS -X POST "$DASHBOARD_URL/api/v1/agent/commands/enqueue" \
  -H 'Content-Type: application/json' \
  "${enqueue_headers[@]}" \
  -d "$body" \
  -w '\n%{http_code}'); then
  die "cannot reach the dashboard at $DASHBOARD_URL (is 'deno task start' running?)"
fi
code=${answer##*$'\n'}
answer=${answer%$'\n'*}
if [[ "$code" == 401 || "$code" == 403 ]]; then
  die "the dashboard refused the enqueue (HTTP $code): $(error_of "$answer"); $(auth_hint)"
fi
if [[ "$code" != 202 && "$code" != 200 ]]; then
  printf 'long_poll_demo: the dashboard refused the enqueue (HTTP %s): %s\n' "$code" "$(error_of "$answer")" >&2
  exit 1
fi
printf '    %s\n' "$answer" >&2

printf '==> waiting for the result (GET %s/api/v1/commands/%s)\n' "$DASHBOARD_URL" "$COMMAND_ID" >&2
start=$SECONDS
interval=0.2
last_status=""
last_failure=""
record=""
while :; do
  # A failed read is said (once until it changes): a refused token ends the demo, a dashboard
  # restarting, failing or rate-limiting is asked again.
  failure=""
  if ! answer=$(curl -sS "${auth_args[@]}" "$DASHBOARD_URL/api/v1/commands/$COMMAND_ID" -w '\n%{http_code}' 2>&1); then
    failure="cannot reach the dashboard: ${answer##*curl: }"
  else
    code=${answer##*$'\n'}
    record=${answer%$'\n'*}
    case "$code" in
      2??) ;;
      401 | 403) die "the dashboard refused reading $COMMAND_ID (HTTP $code): $(error_of "$record"); $(auth_hint)" ;;
      404)
        printf 'long_poll_demo: the dashboard has no command %s (HTTP 404): %s\n' "$COMMAND_ID" "$(error_of "$record")" >&2
        exit 1
        ;;
      *) failure="HTTP $code: $(error_of "$record")" ;;
    esac
  fi
  if [[ -n "$failure" ]]; then
    if [[ "$failure" != "$last_failure" ]]; then
      printf '    reading %s failed (%s); trying again\n' "$COMMAND_ID" "$failure" >&2
    fi
    last_failure=$failure
  else
    last_failure=""
    status=$(json_field "$record" status)
    if [[ "$status" != "$last_status" ]]; then
      printf '    %s (%ss)\n' "$status" "$((SECONDS - start))" >&2
      last_status=$status
    fi
    case "$status" in
      success | failed | timeout | killed | rejected | cancelled | interrupted | lost | expired) break ;;
    esac
  fi
  if ((SECONDS - start >= WAIT_SECS)); then
    printf 'long_poll_demo: no final result after %ss (last status: %s%s)\n' "$WAIT_SECS" \
      "${last_status:-unknown}" "${last_failure:+; last read failed: $last_failure}" >&2
    exit 1
  fi
  sleep "$interval"
  case "$interval" in
    0.2) interval=0.4 ;;
    0.4) interval=0.8 ;;
    *) interval=1 ;;
  esac
done

printf '==> result\n' >&2
if $have_jq; then
  jq . <<<"$record"
  printf '==> stdout\n' >&2
  jq -r '.result.stdout // ""' <<<"$record"
else
  printf '%s\n' "$record"
fi
[[ "$status" == success ]]
