# syntax=docker/dockerfile:1
# noreply-relay container image: build with dev dependencies, run with production ones only.
#   docker build -t noreply-relay:0.1.0 .
# The runtime stage is distroless (no shell, no package manager) and runs as uid 65532.
# Pin the base images by digest in your registry mirror for reproducible builds.

# build: compile TypeScript with the full dependency tree, then bundle the service into
# dist/server.js (scripts/bundle-server.mjs: one file starts ~100 ms sooner than ~1,500).
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no install hook runs at build time (none is needed to compile or bundle).
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/bundle-server.mjs ./scripts/
COPY src ./src
RUN npm run build

# deps: production dependencies only
FROM node:20-bookworm-slim AS deps
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force

# runtime
FROM gcr.io/distroless/nodejs20-debian12:nonroot AS runtime
WORKDIR /app
# V8 sizes its young generation from the memory limit: 1 MiB semi-spaces in a 512 MiB pod,
# where a send cost ~2.2x the CPU. 16 MiB is what the benchmarks measure (docs/operations.md#heap).
# Setting NODE_OPTIONS replaces this: keep the flag in it.
ENV NODE_ENV=production \
    PORT=8080 \
    HOST=0.0.0.0 \
    NODE_OPTIONS=--max-semi-space-size=16
# Files stay owned by root: the service cannot rewrite its own code.
COPY package.json package-lock.json openapi.yaml ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
USER 65532:65532
EXPOSE 8080
# Distroless has no curl or shell: probe /healthz with node itself, exec form. (No
# --start-period: node listens within a second, and dockerfilelint 1.8 misreads that flag.)
HEALTHCHECK --interval=30s --timeout=5s --retries=3 \
    CMD ["/nodejs/bin/node", "-e", "require('http').get({host:'127.0.0.1',port:process.env.PORT||8080,path:'/healthz',timeout:4000},r=>process.exit(r.statusCode===200?0:1)).on('timeout',()=>process.exit(1)).on('error',()=>process.exit(1))"]
# Exec form: node is PID 1 and receives SIGTERM itself, then drains in-flight sends.
ENTRYPOINT ["/nodejs/bin/node", "dist/server.js"]
