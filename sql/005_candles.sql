-- candles(topic, symbol, resolution, from, to): gap-free candles of one symbol at one resolution
-- (issue 14, section 4).
--
-- * Buckets are the engine's windows: [k * resolution, (k + 1) * resolution) since the Unix epoch
--   (UTC), the resolution taken as a fixed duration (a day is 24 h). The rows returned are the
--   buckets that overlap [p_from, p_to): from the bucket containing p_from up to the last bucket
--   starting before p_to (p_to is exclusive), one row per bucket, in order.
-- * Nothing before the symbol's first window (at this topic and resolution) is returned: the
--   result starts at the later of p_from's bucket and that first window. No window at all: no
--   rows.
-- * A bucket without a window is filled: open = high = low = close = the close of the latest
--   window before it (looked up before p_from when the range starts inside a gap), avg_price and
--   vwap NULL, tick_count 0, volume 0, filled true. Buckets after the symbol's latest window are
--   filled too, up to p_to (pass p_to = now() for a live chart).
-- * is_final of a filled bucket is true when a later window of the symbol is final (the
--   watermark is then past the bucket, so no tick can land in it any more), false otherwise.
-- * Errors: a resolution that is not a positive duration raises 22023.
CREATE OR REPLACE FUNCTION candles(
  p_topic text, p_symbol text, p_resolution interval, p_from timestamptz, p_to timestamptz)
RETURNS TABLE (
  window_start timestamptz,
  window_end   timestamptz,
  open_price   double precision,
  high_price   double precision,
  low_price    double precision,
  close_price  double precision,
  avg_price    double precision,
  tick_count   bigint,
  volume       double precision,
  vwap         double precision,
  is_final     boolean,
  filled       boolean)
LANGUAGE plpgsql STABLE STRICT
AS $$
#variable_conflict use_column
DECLARE
  v_res_us     bigint;
  v_step       interval;
  v_from_us    bigint;
  v_lo         timestamptz;
  v_first      timestamptz;
  v_carry      double precision;
  v_last_final timestamptz;
BEGIN
  v_res_us := round(extract(epoch FROM p_resolution) * 1000000);
  IF v_res_us <= 0 THEN
    RAISE EXCEPTION 'Resolution % is not a positive duration', p_resolution
      USING ERRCODE = '22023';
  END IF;
  v_step := make_interval(secs => v_res_us / 1000000.0);

  SELECT min(w.window_start) INTO v_first FROM price_windows w
   WHERE w.topic = p_topic AND w.symbol = p_symbol AND w.window_length = p_resolution;
  IF v_first IS NULL THEN
    RETURN;
  END IF;

  -- The bucket containing p_from (floor division, also before 1970).
  v_from_us := round(extract(epoch FROM p_from) * 1000000);
  v_lo := timestamptz 'epoch' + make_interval(
    secs => (v_from_us - (((v_from_us % v_res_us) + v_res_us) % v_res_us)) / 1000000.0);
  IF v_first > v_lo THEN
    v_lo := v_first;
  END IF;

  -- The close carried into the first bucket if it is a gap: the latest window before it.
  SELECT w.close_price INTO v_carry FROM price_windows w
   WHERE w.topic = p_topic AND w.symbol = p_symbol AND w.window_length = p_resolution
     AND w.window_start < v_lo
   ORDER BY w.window_start DESC LIMIT 1;

  SELECT w.window_start INTO v_last_final FROM price_windows w
   WHERE w.topic = p_topic AND w.symbol = p_symbol AND w.window_length = p_resolution
     AND w.is_final
   ORDER BY w.window_start DESC LIMIT 1;

  RETURN QUERY
  WITH grid AS (
    SELECT g AS bucket FROM generate_series(v_lo, p_to, v_step) AS g WHERE g < p_to
  ), joined AS (
    SELECT grid.bucket, w.window_end AS w_end, w.open_price AS o, w.high_price AS h,
           w.low_price AS l, w.close_price AS c, w.avg_price AS a, w.tick_count AS n,
           w.volume AS v, w.vwap AS vw, w.is_final AS fin,
           count(w.window_start) OVER (ORDER BY grid.bucket) AS grp
      FROM grid
      LEFT JOIN price_windows w
        ON w.topic = p_topic AND w.symbol = p_symbol AND w.window_length = p_resolution
       AND w.window_start = grid.bucket
  ), carried AS (
    SELECT j.*,
           CASE WHEN j.grp = 0 THEN v_carry
                ELSE first_value(j.c) OVER (PARTITION BY j.grp ORDER BY j.bucket) END AS carry
      FROM joined j
  )
  SELECT k.bucket,
         coalesce(k.w_end, k.bucket + v_step),
         coalesce(k.o, k.carry),
         coalesce(k.h, k.carry),
         coalesce(k.l, k.carry),
         coalesce(k.c, k.carry),
         k.a,
         coalesce(k.n, 0::bigint),
         coalesce(k.v, 0::double precision),
         k.vw,
         coalesce(k.fin, v_last_final IS NOT NULL AND k.bucket < v_last_final),
         k.n IS NULL
    FROM carried k
   ORDER BY k.bucket;
END
$$;
