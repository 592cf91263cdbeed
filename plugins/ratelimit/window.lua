--[[
Team quota admission and reconciliation: one atomic script per call.

Every key is derived from ARGV[1], the prefix "rl:{team}:", so all of a team's counters share
one hash tag and one Redis Cluster slot (no CROSSSLOT). KEYS[1] and KEYS[2] are declared so the
cluster client routes the call; the calendar keys are built here because their names depend on
the server clock.

  KEYS[1]  rl:{team}:log   sorted set: one member per admission in the rolling window,
                           score = admission time in ms
  KEYS[2]  rl:{team}:w     hash: member -> its token weight; field "sum" = sum of the weights
           rl:{team}:d:<days since epoch>   integer: tokens charged to that UTC day
           rl:{team}:m:<yyyymm>             integer: tokens charged to that UTC month

Rolling window (the guarantee): an admission at time t belongs to the window at time now iff
t > now - window. The log holds exactly those admissions (older ones are trimmed first, and
their weights subtracted from "sum"), so the request count and the token sum are exact, not
approximated, and the check-and-add runs inside one script, so no two callers can both take
the last unit of capacity. A refusal reports when capacity really frees: the time at which
enough of the oldest admissions leave the window for this request to fit (or the start of the
next UTC day/month for the calendar quotas), assuming no reservation grows meanwhile.

ARGV (admit):     prefix, "admit", member, tokens, window_ms, now_ms (0 = TIME), rpm, tpm,
                  tokens_per_day, tokens_per_month   (a limit of 0 is not enforced)
                  [, member, reserved, actual, at_ms]...   (reconciliations, applied first)
ARGV (peek):      prefix, "peek", "", 0, window_ms, now_ms, 0, 0, 0, 0   (read, no charge)
                  [, member, reserved, actual, at_ms]...
ARGV (reconcile): prefix, "reconcile", member, reserved, actual, at_ms [, member, …]...
                  (the admission's own time picks the calendar buckets it was charged to)

A replica sends its reconciliations with the team's next admission or read, which saves a
script call per request; the ones no call takes within a moment go in a "reconcile" call.

admit/peek return {admitted (1|0), refused_by, retry_after_ms (-1: can never fit), now_ms,
  requests, requests_reset_ms, tokens, tokens_reset_ms, day_tokens, day_reset_ms,
  month_tokens, month_reset_ms}; reset = ms until the oldest admission leaves the window, or
  until the calendar bucket ends.
]]

local prefix = ARGV[1]
local mode = ARGV[2]
local DAY_MS = 86400000

-- Howard Hinnant's civil-from-days / days-from-civil, proleptic Gregorian, UTC.
local function civil(days)
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local function days_from_civil(y, m)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m > 2 and m - 3 or m + 9) + 2) / 5)
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The calendar buckets of an instant: their keys and the ms at which each ends.
local function buckets(at_ms)
  local day = math.floor(at_ms / DAY_MS)
  local y, m = civil(day)
  local ny, nm = y, m + 1
  if nm == 13 then ny, nm = y + 1, 1 end
  return prefix .. 'd:' .. string.format('%d', day), (day + 1) * DAY_MS,
         prefix .. 'm:' .. string.format('%d', y * 100 + m), days_from_civil(ny, nm) * DAY_MS
end

-- Replace reservations' tokens with their actual usage: ARGV[first..] in fours.
local function reconcile(first)
  for i = first, #ARGV - 3, 4 do
    local member, reserved, actual, at_ms = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
    local old = redis.call('HGET', KEYS[2], member)
    if old then
      -- Still in the window: its weight becomes the actual usage.
      redis.call('HSET', KEYS[2], member, actual)
      redis.call('HINCRBY', KEYS[2], 'sum', actual - tonumber(old))
    end
    local delta = actual - reserved
    if delta ~= 0 then
      local day_key, _, month_key = buckets(at_ms)
      -- A bucket that already expired is not recreated with a stray (possibly negative) value.
      if redis.call('EXISTS', day_key) == 1 then redis.call('INCRBY', day_key, delta) end
      if redis.call('EXISTS', month_key) == 1 then redis.call('INCRBY', month_key, delta) end
    end
  end
end

if mode == 'reconcile' then
  reconcile(3)
  return 1
end
reconcile(11)

local member, cost, window = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local now = tonumber(ARGV[6])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local rpm, tpm, per_day, per_month = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])

-- Trim admissions that left the window, subtracting their weights from the sum.
local cutoff = now - window
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff)
if #gone > 0 then
  local freed = 0
  for i = 1, #gone, 1000 do
    local chunk = {}
    for j = i, math.min(i + 999, #gone) do chunk[#chunk + 1] = gone[j] end
    local weights = redis.call('HMGET', KEYS[2], unpack(chunk))
    for _, w in ipairs(weights) do freed = freed + (tonumber(w) or 0) end
    redis.call('HDEL', KEYS[2], unpack(chunk))
  end
  -- Skipped when nothing was freed: Lua's -0 reaches Redis as "-0", which it rejects.
  if freed ~= 0 then redis.call('HINCRBY', KEYS[2], 'sum', 0 - freed) end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
end

local requests = redis.call('ZCARD', KEYS[1])
local tokens = tonumber(redis.call('HGET', KEYS[2], 'sum')) or 0
local day_key, day_end, month_key, month_end = buckets(now)
local day_tokens = tonumber(redis.call('GET', day_key)) or 0
local month_tokens = tonumber(redis.call('GET', month_key)) or 0

local refused_by, wait = '', 0
local function refuse(name, ms)
  -- Every limit must pass, so the request fits once the slowest one frees.
  if refused_by == '' or ms < 0 or (wait >= 0 and ms > wait) then refused_by, wait = name, ms end
end

if mode == 'admit' then
  if rpm > 0 and requests + 1 > rpm then
    -- The (requests - rpm + 1) oldest admissions must leave; the last of them is at rank requests - rpm.
    local e = redis.call('ZRANGE', KEYS[1], requests - rpm, requests - rpm, 'WITHSCORES')
    refuse('rpm', tonumber(e[2]) + window - now)
  end
  if tpm > 0 and tokens + cost > tpm then
    if cost > tpm then
      refuse('tpm', -1)
    else
      -- Walk the oldest admissions, a page at a time, until enough tokens would have left;
      -- usually the first page, so a team hammering at its limit costs little.
      local left, at, first = tokens, now + window, 0
      while at == now + window and first < requests do
        local page = redis.call('ZRANGE', KEYS[1], first, first + 99, 'WITHSCORES')
        local members = {}
        for i = 1, #page, 2 do members[#members + 1] = page[i] end
        local weights = redis.call('HMGET', KEYS[2], unpack(members))
        for i, w in ipairs(weights) do
          left = left - (tonumber(w) or 0)
          if left + cost <= tpm then at = tonumber(page[2 * i]) + window; break end
        end
        first = first + 100
      end
      refuse('tpm', at - now)
    end
  end
  if per_day > 0 and day_tokens + cost > per_day then
    refuse('tokens_per_day', cost > per_day and -1 or day_end - now)
  end
  if per_month > 0 and month_tokens + cost > per_month then
    refuse('tokens_per_month', cost > per_month and -1 or month_end - now)
  end
  if refused_by == '' then
    redis.call('ZADD', KEYS[1], now, member)
    redis.call('HSET', KEYS[2], member, cost)
    tokens = redis.call('HINCRBY', KEYS[2], 'sum', cost)
    redis.call('PEXPIRE', KEYS[1], window)
    redis.call('PEXPIRE', KEYS[2], window)
    requests = requests + 1
    if cost > 0 then
      -- Charged even without a calendar limit, so one added by a reload sees the usage so far.
      -- Kept a day past their bucket so late reconciliations still land.
      day_tokens = redis.call('INCRBY', day_key, cost)
      redis.call('PEXPIRE', day_key, day_end - now + DAY_MS)
      month_tokens = redis.call('INCRBY', month_key, cost)
      redis.call('PEXPIRE', month_key, month_end - now + DAY_MS)
    end
  end
end

local window_reset = window
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #oldest > 0 then window_reset = tonumber(oldest[2]) + window - now end

return {refused_by == '' and mode == 'admit' and 1 or 0, refused_by, wait, now,
        requests, window_reset, tokens, window_reset,
        day_tokens, day_end - now, month_tokens, month_end - now}
