# Minimal for now; "Operations and performance" completes it (multi-stage, non-root, HEALTHCHECK).
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends nats-server && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts
COPY dist ./dist
COPY schemas ./schemas
ENTRYPOINT ["node", "dist/cli/main.js"]
CMD ["worker"]
