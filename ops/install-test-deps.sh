#!/usr/bin/env bash
# Install what the tests use, from Debian's packages. Idempotent.
#   sip-tester   SIPp, the SIP load and scenario tool (phones and carriers in tests)
#   baresip-core a real SIP user agent (registers, auto-answers)
#   procps       kill(1), used to send SIGTERM to `switchboard serve`
#   curl         HTTP checks in scripts
#   tcpdump      captures SIP on loopback for the load tool's replay tests
#   dnsutils     dig, queries the ENUM responder for NAPTR records
#   python3-aiosmtpd  a real SMTP server on loopback that receives billing notices and cards
#   chromium, chromium-driver  headless browser (WebDriver) for the card maker and live card
#   fonts-dejavu-core  fonts for the browser's pages and screenshots
#   dnsmasq-base       a real DNS server on loopback holding the TXT records of domain-alias proofs
#   openjdk-17-jre-headless, maven  run Apache Cassandra 5.0, the CQL cluster of the
#                      ScyllaDB backend's tests (ops/cassandra; its jars from Maven Central)
#   cargo-nextest      the test runner (crates.io), when absent
set -euo pipefail
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v baresip >/dev/null || need+=(baresip-core)
command -v kill >/dev/null || need+=(procps)
command -v curl >/dev/null || need+=(curl)
command -v tcpdump >/dev/null || need+=(tcpdump)
command -v dig >/dev/null || need+=(dnsutils)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v java >/dev/null || [ -n "${JAVA_HOME:-}" ] || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# The test runner, from crates.io (a new machine may lack it).
command -v cargo-nextest >/dev/null || cargo install cargo-nextest --locked
# Cassandra's jars, resolved once (ops/cassandra/cluster.sh uses them).
mvn -q -B -f "$(dirname "$0")/cassandra/pom.xml" dependency:resolve >/dev/null
sipp -v 2>/dev/null | grep -m1 SIPp || true
baresip -h 2>&1 | head -1 || true
