# vmq worker image: build stage compiles TypeScript; the runtime stage is slim, runs as a
# non-root user and carries nats-server for the embedded default. QEMU is a variant:
#   docker build --build-arg WITH_QEMU=1 -t vmq:qemu .   (then run with --device /dev/kvm)

FROM node:20-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim AS runtime
ARG WITH_QEMU=0
RUN apt-get update \
 && apt-get install -y --no-install-recommends nats-server \
 && if [ "$WITH_QEMU" = "1" ]; then apt-get install -y --no-install-recommends qemu-system-x86 qemu-utils genisoimage ovmf; fi \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /var/lib/vmq --shell /usr/sbin/nologin vmq
WORKDIR /app
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY schemas ./schemas
COPY scripts/demo-scheduler.mjs ./scripts/demo-scheduler.mjs
USER vmq
ENV NODE_ENV=production \
    VMQ_DATA_DIR=/var/lib/vmq \
    VMQ_HTTP=:9464
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["worker"]
