-- Throttles on password guessing and anonymous writes: attempts per key (a login's
-- account, a client address) in a fixed window. Counted in PostgreSQL so the limit is
-- exact across replicas, and only through the definer functions below: the
-- application role has no privilege on the table, so no tenant can read who was
-- throttled. The functions run on their own connection (autocommit), so an attempt
-- counts even when the request that made it fails and rolls back.
CREATE TABLE request_throttles (
    key text PRIMARY KEY CHECK (length(key) <= 200),
    window_started_at timestamptz NOT NULL,
    hits integer NOT NULL
);
ALTER TABLE request_throttles ENABLE ROW LEVEL SECURITY;
ALTER TABLE request_throttles FORCE ROW LEVEL SECURITY;

-- Counts `hit_count` attempts of `throttle_key`; returns 0 while the key is within
-- `max_hits` attempts of its window, else the seconds until the window ends.
CREATE FUNCTION app.throttle_hit(throttle_key text, hit_count integer, max_hits integer,
                                 window_seconds integer)
RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
    INSERT INTO public.request_throttles AS t (key, window_started_at, hits)
    VALUES (throttle_key, now(), hit_count)
    ON CONFLICT (key) DO UPDATE SET
        window_started_at = CASE
            WHEN t.window_started_at <= now() - make_interval(secs => window_seconds) THEN now()
            ELSE t.window_started_at END,
        hits = CASE
            WHEN t.window_started_at <= now() - make_interval(secs => window_seconds) THEN hit_count
            ELSE t.hits + hit_count END
    RETURNING CASE WHEN t.hits > max_hits
        THEN greatest(1, ceil(extract(epoch FROM
            t.window_started_at + make_interval(secs => window_seconds) - now())))::integer
        ELSE 0 END
$$;

-- Forgets a key (a successful login clears its account's count).
CREATE FUNCTION app.throttle_clear(throttle_key text) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
    DELETE FROM public.request_throttles WHERE key = throttle_key
$$;

-- Drops windows that ended over a day ago; returns how many.
CREATE FUNCTION app.purge_request_throttles() RETURNS integer
LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = pg_catalog AS $$
    WITH gone AS (
        DELETE FROM public.request_throttles
        WHERE window_started_at < now() - interval '1 day' RETURNING 1
    )
    SELECT count(*)::integer FROM gone
$$;

REVOKE ALL ON FUNCTION app.throttle_hit(text, integer, integer, integer), app.throttle_clear(text),
    app.purge_request_throttles() FROM PUBLIC;
