package tickpipe.bench;

import static org.apache.spark.sql.functions.avg;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.expr;
import static org.apache.spark.sql.functions.from_json;
import static org.apache.spark.sql.functions.lit;
import static org.apache.spark.sql.functions.max;
import static org.apache.spark.sql.functions.max_by;
import static org.apache.spark.sql.functions.min;
import static org.apache.spark.sql.functions.min_by;
import static org.apache.spark.sql.functions.struct;
import static org.apache.spark.sql.functions.window;

import java.io.Serializable;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.ZoneOffset;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.spark.api.java.function.ForeachPartitionFunction;
import org.apache.spark.api.java.function.VoidFunction2;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerTaskStart;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.streaming.StreamingQueryListener;
import org.apache.spark.sql.streaming.StreamingQueryProgress;
import org.apache.spark.sql.streaming.StreamingQueryStatus;
import org.apache.spark.sql.streaming.Trigger;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;

/**
 * The seed's query (the Kafka → Spark → PostgreSQL design tickpipe replaces), for the bench's
 * opt-in vs-spark suite: 5-minute tumbling event-time windows per symbol, a 15-minute watermark,
 * update output mode, a processing-time trigger, and an upsert into PostgreSQL from foreachBatch.
 * It exits on its own once no batch has had input for --idle-ms (counted from the end of the last
 * batch with input, or from the first trigger if none had any).
 *
 * <p>Flags (all --name value): --topic (required), --checkpoint DIR (required, fresh per run),
 * --brokers (127.0.0.1:9092), --master (local[2]), --trigger ("5 seconds"), --idle-ms (10000),
 * --shuffle-partitions (4), --table (spark_price_windows), --local-dir (Spark scratch space).
 * The database comes from the environment: SPARK_BENCH_JDBC_URL, SPARK_BENCH_DB_USER,
 * SPARK_BENCH_DB_PASSWORD (not argv, so the password is not visible in ps).
 *
 * <p>Stdout carries one JSON line per event for the harness: jvm-start, started, first-task (the
 * first task of the first micro-batch starts, i.e. the first Kafka read), batch (each progress
 * event), stopped. Spark's own logging goes to stderr at WARN (log4j2.properties).
 */
public final class SparkWindows {
  private SparkWindows() {}

  /** Where and how the batches are upserted; serialized into the executor-side closure. */
  static final class JdbcTarget implements Serializable {
    private static final long serialVersionUID = 1L;
    final String url;
    final String user;
    final String password;
    final String table;

    JdbcTarget(String url, String user, String password, String table) {
      this.url = url;
      this.user = user;
      this.password = password;
      this.table = table;
    }

    String upsertSql() {
      return "INSERT INTO " + table + " (symbol, window_start, window_end, tick_count, avg_price,"
          + " open_price, high_price, low_price, close_price, first_tick_at, last_tick_at,"
          + " batch_id, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now())"
          + " ON CONFLICT (symbol, window_start) DO UPDATE SET window_end = EXCLUDED.window_end,"
          + " tick_count = EXCLUDED.tick_count, avg_price = EXCLUDED.avg_price,"
          + " open_price = EXCLUDED.open_price, high_price = EXCLUDED.high_price,"
          + " low_price = EXCLUDED.low_price, close_price = EXCLUDED.close_price,"
          + " first_tick_at = EXCLUDED.first_tick_at, last_tick_at = EXCLUDED.last_tick_at,"
          + " batch_id = EXCLUDED.batch_id, updated_at = now()";
    }

    String createSql() {
      return "CREATE TABLE IF NOT EXISTS " + table + " ("
          + " symbol text NOT NULL, window_start timestamptz NOT NULL,"
          + " window_end timestamptz NOT NULL, tick_count bigint NOT NULL,"
          + " avg_price double precision NOT NULL, open_price double precision NOT NULL,"
          + " high_price double precision NOT NULL, low_price double precision NOT NULL,"
          + " close_price double precision NOT NULL, first_tick_at timestamptz NOT NULL,"
          + " last_tick_at timestamptz NOT NULL, batch_id bigint NOT NULL,"
          + " updated_at timestamptz NOT NULL DEFAULT now(),"
          + " PRIMARY KEY (symbol, window_start))";
    }

    Connection connect() throws SQLException {
      return DriverManager.getConnection(url, user, password);
    }
  }

  private static final AtomicLong lastDataAt = new AtomicLong();
  private static final AtomicLong inputRows = new AtomicLong();
  private static final AtomicLong batches = new AtomicLong();
  private static final AtomicBoolean firstTask = new AtomicBoolean();

  private static synchronized void emit(String event, String fields) {
    System.out.println("{\"event\":\"" + event + "\",\"ms\":" + System.currentTimeMillis()
        + (fields.isEmpty() ? "" : "," + fields) + "}");
    System.out.flush();
  }

  private static Map<String, String> parseArgs(String[] args) {
    Map<String, String> out = new HashMap<>();
    for (int i = 0; i < args.length; i++) {
      String a = args[i];
      if (!a.startsWith("--") || i + 1 >= args.length) {
        throw new IllegalArgumentException("Bad argument \"" + a + "\": expected --name value");
      }
      out.put(a.substring(2), args[++i]);
    }
    return out;
  }

  private static String required(Map<String, String> args, String name) {
    String v = args.get(name);
    if (v == null || v.isEmpty()) throw new IllegalArgumentException("Missing --" + name);
    return v;
  }

  private static String env(String name) {
    String v = System.getenv(name);
    if (v == null) throw new IllegalArgumentException("Missing environment variable " + name);
    return v;
  }

  /** Upserts one partition of a micro-batch's changed windows in one transaction. */
  static void writePartition(Iterator<Row> rows, JdbcTarget target, long batchId)
      throws SQLException {
    if (!rows.hasNext()) return;
    try (Connection c = target.connect()) {
      c.setAutoCommit(false);
      try (PreparedStatement ps = c.prepareStatement(target.upsertSql())) {
        int pending = 0;
        while (rows.hasNext()) {
          Row r = rows.next();
          ps.setString(1, r.getString(0));
          ps.setObject(2, ((Timestamp) r.get(1)).toInstant().atOffset(ZoneOffset.UTC));
          ps.setObject(3, ((Timestamp) r.get(2)).toInstant().atOffset(ZoneOffset.UTC));
          ps.setLong(4, r.getLong(3));
          ps.setDouble(5, r.getDouble(4));
          ps.setDouble(6, r.getDouble(5));
          ps.setDouble(7, r.getDouble(6));
          ps.setDouble(8, r.getDouble(7));
          ps.setDouble(9, r.getDouble(8));
          ps.setObject(10, ((Timestamp) r.get(9)).toInstant().atOffset(ZoneOffset.UTC));
          ps.setObject(11, ((Timestamp) r.get(10)).toInstant().atOffset(ZoneOffset.UTC));
          ps.setLong(12, batchId);
          ps.addBatch();
          if (++pending == 5000) {
            ps.executeBatch();
            pending = 0;
          }
        }
        if (pending > 0) ps.executeBatch();
      }
      c.commit();
    }
  }

  /** foreachBatch body: every partition of the batch upserts its rows over its own connection. */
  static void upsertBatch(Dataset<Row> batch, long batchId, JdbcTarget target) {
    Dataset<Row> rows = batch.select(
        col("symbol"), col("window.start"), col("window.end"), col("tick_count"),
        col("avg_price"), col("open_price"), col("high_price"), col("low_price"),
        col("close_price"), col("first_tick_at"), col("last_tick_at"));
    rows.foreachPartition((ForeachPartitionFunction<Row>) it -> writePartition(it, target, batchId));
  }

  public static void main(String[] argv) throws Exception {
    emit("jvm-start", "");
    Map<String, String> args = parseArgs(argv);
    String topic = required(args, "topic");
    String checkpoint = required(args, "checkpoint");
    String brokers = args.getOrDefault("brokers", "127.0.0.1:9092");
    String master = args.getOrDefault("master", "local[2]");
    String trigger = args.getOrDefault("trigger", "5 seconds");
    long idleMs = Long.parseLong(args.getOrDefault("idle-ms", "10000"));
    String shufflePartitions = args.getOrDefault("shuffle-partitions", "4");
    String localDir = args.getOrDefault("local-dir", checkpoint + "-local");
    JdbcTarget target = new JdbcTarget(env("SPARK_BENCH_JDBC_URL"), env("SPARK_BENCH_DB_USER"),
        env("SPARK_BENCH_DB_PASSWORD"), args.getOrDefault("table", "spark_price_windows"));
    try (Connection c = target.connect(); Statement s = c.createStatement()) {
      s.execute(target.createSql());
    }

    SparkSession spark = SparkSession.builder()
        .appName("tickpipe-vs-spark")
        .master(master)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", shufflePartitions)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.local.dir", localDir)
        .getOrCreate();
    spark.sparkContext().addSparkListener(new SparkListener() {
      @Override
      public void onTaskStart(SparkListenerTaskStart taskStart) {
        if (firstTask.compareAndSet(false, true)) emit("first-task", "");
      }
    });
    spark.streams().addListener(new StreamingQueryListener() {
      @Override
      public void onQueryStarted(QueryStartedEvent event) {
        emit("started", "");
      }

      @Override
      public void onQueryProgress(QueryProgressEvent event) {
        StreamingQueryProgress p = event.progress();
        long rows = p.numInputRows();
        long total = inputRows.addAndGet(rows);
        // The idle clock starts at the first progress event (the first trigger ran), and
        // restarts at the end of every batch that had input.
        if (rows > 0 || batches.get() == 0) lastDataAt.set(System.currentTimeMillis());
        batches.incrementAndGet();
        emit("batch", "\"batchId\":" + p.batchId() + ",\"inputRows\":" + rows
            + ",\"totalInputRows\":" + total + ",\"durationMs\":" + mapJson(p.durationMs())
            + ",\"watermark\":\"" + p.eventTime().getOrDefault("watermark", "") + "\"");
      }

      @Override
      public void onQueryTerminated(QueryTerminatedEvent event) {}
    });

    StructType schema = new StructType()
        .add("id", DataTypes.StringType)
        .add("price", DataTypes.DoubleType)
        .add("time", DataTypes.LongType);
    Dataset<Row> ticks = spark.readStream()
        .format("kafka")
        .option("kafka.bootstrap.servers", brokers)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
        .load()
        .select(from_json(col("value").cast("string"), schema).as("t"), col("offset"))
        // Event time from the epoch-ms long, exactly (the seed's float-seconds cast rounded it).
        .select(col("t.id").as("symbol"), col("t.price").as("price"),
            expr("timestamp_millis(t.time)").as("event_time"), col("offset"))
        .where("symbol IS NOT NULL AND price IS NOT NULL AND event_time IS NOT NULL");
    // open/close: the price at the earliest/latest event time, ties broken by offset (a symbol
    // lives in one partition), as tickpipe defines them.
    Dataset<Row> windows = ticks
        .withWatermark("event_time", "15 minutes")
        .groupBy(window(col("event_time"), "5 minutes"), col("symbol"))
        .agg(
            count(lit(1)).as("tick_count"),
            avg("price").as("avg_price"),
            min_by(col("price"), struct(col("event_time"), col("offset"))).as("open_price"),
            max("price").as("high_price"),
            min("price").as("low_price"),
            max_by(col("price"), struct(col("event_time"), col("offset"))).as("close_price"),
            min("event_time").as("first_tick_at"),
            max("event_time").as("last_tick_at"));

    StreamingQuery query = windows.writeStream()
        .queryName("tickpipe_vs_spark")
        .outputMode("update")
        .trigger(Trigger.ProcessingTime(trigger))
        .option("checkpointLocation", checkpoint)
        .foreachBatch((VoidFunction2<Dataset<Row>, Long>) (batch, id) ->
            upsertBatch(batch, id, target))
        .start();

    String reason = "idle";
    while (true) {
      if (query.awaitTermination(200)) {
        reason = "terminated";
        break;
      }
      StreamingQueryStatus status = query.status();
      long now = System.currentTimeMillis();
      if (status.isDataAvailable()) lastDataAt.set(now);
      // Not idle before the first trigger has run: startup can take long on a busy machine.
      if (batches.get() > 0 && now - lastDataAt.get() >= idleMs) break;
    }
    query.stop();
    int code = 0;
    if (query.exception().isDefined()) {
      System.err.println("Query failed: " + query.exception().get().getMessage());
      code = 1;
    }
    emit("stopped", "\"reason\":\"" + reason + "\",\"totalInputRows\":" + inputRows.get()
        + ",\"batches\":" + batches.get());
    spark.stop();
    System.exit(code);
  }

  private static String mapJson(Map<String, Long> m) {
    StringBuilder b = new StringBuilder("{");
    for (Map.Entry<String, Long> e : m.entrySet()) {
      if (b.length() > 1) b.append(',');
      b.append('"').append(e.getKey()).append("\":").append(e.getValue());
    }
    return b.append('}').toString();
  }
}
