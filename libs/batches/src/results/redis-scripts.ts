import type { Redis } from 'ioredis';

// Celery 5.2 GETs, then SETEX + PUBLISH in a pipeline; one script makes that check-and-set atomic.
const STORE_SCRIPT = `
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
`;

// Celery 5.2's on_chord_part_return (Redis, ordered chords): ZADD the part with its group index, count
// the parts against the size the producer set (`.s`) plus any added since (`.t`), refresh the expiry.
// The part that completes the count reads every part and deletes the keys, all in one atomic step,
// so exactly one worker, Python or Nest, fires the body.
const CHORD_PART_SCRIPT = `
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local ready = redis.call('ZCOUNT', KEYS[1], '-inf', '+inf')
local diff = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local size = redis.call('GET', KEYS[3])
for i = 1, 3 do redis.call('PEXPIRE', KEYS[i], ARGV[3]) end
if not size then return false end
if ready ~= tonumber(size) + diff then return false end
local parts = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return parts
`;

// The same check-and-set for a whole batch in one script: one round trip however many results.
// KEYS are the result keys; ARGV their values, then the expiry.
const STORE_MANY_SCRIPT = `
local expires = ARGV[#ARGV]
local stored = 0
for i, key in ipairs(KEYS) do
  local current = redis.call('GET', key)
  local done = false
  if current then
    local ok, meta = pcall(cjson.decode, current)
    done = ok and type(meta) == 'table' and meta['status'] == 'SUCCESS'
  end
  if not done then
    redis.call('SET', key, ARGV[i], 'PX', expires)
    redis.call('PUBLISH', key, ARGV[i])
    stored = stored + 1
  end
end
return stored
`;

/** A client with the scripts defined as its commands. */
export type CeleryRedis = Redis & {
  storeCeleryMeta(key: string, value: string, expiresMs: number): Promise<number>;
  storeCeleryMetas(keyCount: number, ...keysValuesAndExpiry: Array<string | number>): Promise<number>;
  chordPartReturn(parts: string, diff: string, size: string, part: string, score: string, expiresMs: number): Promise<string[] | null>;
};

/** Defines the scripts on `client` as the commands `CeleryRedis` declares. */
export function defineCeleryScripts(client: Redis): CeleryRedis {
  client.defineCommand('storeCeleryMeta', { numberOfKeys: 1, lua: STORE_SCRIPT });
  client.defineCommand('storeCeleryMetas', { lua: STORE_MANY_SCRIPT });
  client.defineCommand('chordPartReturn', { numberOfKeys: 3, lua: CHORD_PART_SCRIPT });
  return client as CeleryRedis;
}
