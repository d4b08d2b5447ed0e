# Multi-stage image: build with dev dependencies, ship the compiled daemon
# with production dependencies only, running as a non-root user.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
COPY clients/typescript/package.json clients/typescript/
RUN npm ci
COPY . .
RUN npx tsc -b && npm prune --omit=dev

FROM node:20-bookworm-slim
# Listening beyond loopback needs authentication and TLS (or an explicit
# CAIRN_INSECURE=true): mount a directory at /etc/cairn holding auth.yaml,
# tls.crt and tls.key (see README, "Namespaces and security").
ENV NODE_ENV=production \
    CAIRN_LISTEN=0.0.0.0:50051 \
    CAIRN_DATA_DIR=/var/lib/cairn/data \
    CAIRN_AUTH_FILE=/etc/cairn/auth.yaml \
    CAIRN_TLS_CERT_FILE=/etc/cairn/tls.crt \
    CAIRN_TLS_KEY_FILE=/etc/cairn/tls.key \
    CAIRN_METRICS_LISTEN=0.0.0.0:9464
RUN groupadd --system cairn && useradd --system --gid cairn --home-dir /var/lib/cairn cairn \
    && mkdir -p /var/lib/cairn && chown cairn:cairn /var/lib/cairn
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/migrations ./migrations
COPY --from=build /app/clients/typescript/package.json ./clients/typescript/
COPY --from=build /app/clients/typescript/dist ./clients/typescript/dist
USER cairn
# 9464: /metrics, /healthz, /readyz for the orchestrator (plain HTTP, no auth: keep it off public networks).
EXPOSE 50051 9464
# Without DATABASE_URL the image runs its embedded PostgreSQL in /var/lib/cairn
# (mount a volume there); set DATABASE_URL to use your own PostgreSQL 15+.
ENTRYPOINT ["node", "dist/src/main.js"]
CMD ["serve"]
