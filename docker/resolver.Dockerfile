# The validating resolver next to strictmx: unbound with the root trust anchor, installed once
# at build time (not at every start). Build from the repository root, as compose does.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends unbound dns-root-data dnsutils \
 && rm -rf /var/lib/apt/lists/* \
 && cp /usr/share/dns/root.key /var/lib/unbound/root.key \
 && chown unbound /var/lib/unbound/root.key
COPY docker/unbound.conf /etc/unbound/strictmx.conf
# Healthy once it answers a DNSSEC-validated query for the root (the AD flag set).
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=6 \
  CMD dig +dnssec +time=2 +tries=1 @127.0.0.1 . SOA | grep -q 'flags:.* ad'
EXPOSE 53/udp 53/tcp
ENTRYPOINT ["unbound", "-d", "-c", "/etc/unbound/strictmx.conf"]
