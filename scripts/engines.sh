# The engines Tonearm's deployed shape runs on, installed (idempotently) and started when
# they are not running: PostgreSQL, Redis, a Kafka-protocol broker (tansu), an S3 server
# (s3s-fs), ClickHouse and ffmpeg. Sourced by scripts/test and deploy/local/cluster.sh;
# they set TONEARM_TEST_POSTGRES_URL and TONEARM_TEST_S3_* before calling.

say() { printf '==> %s\n' "$*"; }

apt_updated=""
apt_install() {
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

wait_for() { # description, command...
    local what="$1"
    shift
    for _ in $(seq 1 60); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    echo "error: $what did not come up" >&2
    return 1
}

ensure_postgres() {
    if ! command -v pg_ctlcluster >/dev/null 2>&1; then
        say "installing PostgreSQL"
        apt_install postgresql postgresql-client
    fi
    if ! pg_isready -q -h 127.0.0.1 -p 5432; then
        say "starting PostgreSQL"
        local version
        version="$(ls /etc/postgresql | sort -V | tail -n 1)"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
        wait_for "PostgreSQL" pg_isready -h 127.0.0.1 -p 5432
    fi
    if ! psql "$TONEARM_TEST_POSTGRES_URL/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; then
        # A fresh Debian cluster asks for a password on TCP: give the test role one.
        say "configuring PostgreSQL access for the tests"
        su postgres -c "psql -qc \"ALTER USER postgres PASSWORD 'postgres'\"" >/dev/null
        export TONEARM_TEST_POSTGRES_URL="postgres://postgres:postgres@127.0.0.1:5432"
        psql "$TONEARM_TEST_POSTGRES_URL/postgres" -Atqc 'SELECT 1' >/dev/null
    fi
}

ensure_redis() {
    # The fault tests start Redis servers of their own, so the binary must exist.
    if ! command -v redis-server >/dev/null 2>&1; then
        say "installing Redis"
        apt_install redis-server redis-tools
    fi
    if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
        say "starting Redis"
        mkdir -p /var/lib/redis /var/log/redis
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
            --dir /var/lib/redis --logfile /var/log/redis/ci.log
        wait_for "Redis" redis-cli -h 127.0.0.1 -p 6379 ping
    fi
}

port_open() { # host, port
    (: <"/dev/tcp/$1/$2") >/dev/null 2>&1
}

ensure_kafka() {
    # tansu: a Kafka-compatible broker in one Rust binary. The fault tests start brokers
    # of their own, so the binary must exist; it is built once into the cache.
    local tools="$HOME/.cache/tonearm/tools"
    if [ ! -x "$tools/bin/tansu" ]; then
        say "building the tansu Kafka broker (once; takes a while)"
        CARGO_TARGET_DIR="$HOME/.cache/tonearm/tools-target" \
            cargo install tansu@0.6.0 --locked --features dynostore --root "$tools"
    fi
    export PATH="$tools/bin:$PATH"
    export TONEARM_TANSU="$tools/bin/tansu"
    if ! port_open 127.0.0.1 9092; then
        say "starting the tansu Kafka broker"
        # From the cache dir: tansu reads a `.env` from its working directory.
        (cd "$HOME/.cache/tonearm" &&
            nohup "$TONEARM_TANSU" broker \
                --listener-url tcp://127.0.0.1:9092 \
                --advertised-listener-url tcp://127.0.0.1:9092 \
                --storage-engine memory://tansu/ \
                </dev/null >"$HOME/.cache/tonearm/tansu.log" 2>&1 &)
        wait_for "Kafka (tansu)" port_open 127.0.0.1 9092
    fi
}

ensure_s3() {
    # s3s-fs: an S3-compatible server over a directory, which checks request signatures.
    local tools="$HOME/.cache/tonearm/tools"
    if [ ! -x "$tools/bin/s3s-fs" ]; then
        say "building the s3s-fs S3 server (once)"
        CARGO_TARGET_DIR="$HOME/.cache/tonearm/tools-target" \
            cargo install s3s-fs@0.14.1 --locked --features binary --root "$tools"
    fi
    export TONEARM_TEST_S3_ENDPOINT="${TONEARM_TEST_S3_ENDPOINT:-http://127.0.0.1:9900}"
    export TONEARM_TEST_S3_BUCKET="${TONEARM_TEST_S3_BUCKET:-tonearm-test}"
    export TONEARM_TEST_S3_ACCESS_KEY="${TONEARM_TEST_S3_ACCESS_KEY:-tonearm}"
    export TONEARM_TEST_S3_SECRET_KEY="${TONEARM_TEST_S3_SECRET_KEY:-tonearm-secret}"
    local root="$HOME/.cache/tonearm/s3"
    mkdir -p "$root/$TONEARM_TEST_S3_BUCKET"
    if ! port_open 127.0.0.1 9900; then
        say "starting the s3s-fs S3 server"
        # From a directory that outlives the checkout: s3s-fs resolves every object's path
        # against its working directory, and a deleted one turns each request into a 500.
        (cd "$root" &&
            nohup "$tools/bin/s3s-fs" --host 127.0.0.1 --port 9900 \
                --access-key "$TONEARM_TEST_S3_ACCESS_KEY" --secret-key "$TONEARM_TEST_S3_SECRET_KEY" \
                "$root" </dev/null >"$HOME/.cache/tonearm/s3s-fs.log" 2>&1 &)
        wait_for "S3 (s3s-fs)" port_open 127.0.0.1 9900
    fi
}

ensure_clickhouse() {
    # The analytics warehouse's engine. Debian's package is ClickHouse 18.16, old enough
    # that the adapter keeps to what both it and current releases accept.
    if ! command -v clickhouse-server >/dev/null 2>&1 ||
        ! command -v clickhouse-client >/dev/null 2>&1; then
        say "installing ClickHouse"
        apt_install clickhouse-server clickhouse-client
    fi
    export TONEARM_TEST_CLICKHOUSE_URL="${TONEARM_TEST_CLICKHOUSE_URL:-clickhouse://127.0.0.1:8123}"
    if ! port_open 127.0.0.1 8123; then
        say "starting ClickHouse"
        # A copy of the packaged config, overridden so that the server listens on loopback
        # only and writes nothing outside the cache dir (no /var/lib, no system service).
        local dir="$HOME/.cache/tonearm/clickhouse"
        mkdir -p "$dir/config.d" "$dir/data" "$dir/tmp" "$dir/user_files" "$dir/log"
        cp /etc/clickhouse-server/config.xml /etc/clickhouse-server/users.xml "$dir/"
        cat >"$dir/config.d/tonearm.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/log/clickhouse-server.log</log>
        <errorlog>$dir/log/clickhouse-server.err.log</errorlog>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>8123</http_port>
    <tcp_port>9000</tcp_port>
    <interserver_http_port>9009</interserver_http_port>
    <path>$dir/data/</path>
    <tmp_path>$dir/tmp/</tmp_path>
    <user_files_path>$dir/user_files/</user_files_path>
    <format_schema_path>$dir/data/format_schemas/</format_schema_path>
</yandex>
XML
        (cd "$dir" &&
            nohup clickhouse-server --config-file="$dir/config.xml" \
                </dev/null >"$dir/log/stdout.log" 2>&1 &)
        wait_for "ClickHouse" port_open 127.0.0.1 8123
    fi
}

ensure_ffmpeg() {
    # Streaming transcodes with ffmpeg; the tests also use it to make and check audio.
    if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
        say "installing ffmpeg"
        apt_install --no-install-recommends ffmpeg
    fi
}

ensure_voice() {
    # The voice's phonemes come from libespeak-ng; the voice tests speak with espeak-ng.
    if ! command -v espeak-ng >/dev/null 2>&1 || ! ldconfig -p | grep 'libespeak-ng\.so\.1' >/dev/null; then
        say "installing espeak-ng"
        apt_install --no-install-recommends espeak-ng libespeak-ng1
    fi
}
