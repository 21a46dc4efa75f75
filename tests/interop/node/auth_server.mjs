// A real OpenID Certified authorization server (oidc-provider) for the
// credentials tests, on loopback:
//   node auth_server.mjs PORT TTL_SECONDS [FORMAT [TOKEN_DELAY_MS]]
// - access tokens as JWTs (FORMAT `jwt`, the default) or opaque ones
//   (`opaque`: the kind RFC 7009 revocation and RFC 7662 introspection
//   apply to); the token endpoint answers after TOKEN_DELAY_MS, as a real
//   identity provider's does;
// - revocation (/token/revocation) and introspection (/token/introspection)
//   enabled, published in /.well-known/openid-configuration;
// - clients `headgate` (client_secret_basic) and `headgate-post`
//   (client_secret_post), secret `hg-client-secret`;
// - client credentials and refresh tokens (rotated on every use; reuse is
//   caught by the provider and answered invalid_grant) with JWT access
//   tokens for the resource http://crm.test/mcp, living TTL_SECONDS;
// - RFC 8693 token exchange of a subject token signed by this script's
//   "identity provider" key;
// - test-only endpoints: POST /test/mint?user=U gives a refresh token and a
//   subject token for U; GET /test/stats counts grants by type and errors.
import http from 'node:http';
import Provider, { errors } from 'oidc-provider';
import * as jose from 'jose';

const port = Number(process.argv[2]);
const ttl = Number(process.argv[3] || 4);
const format = process.argv[4] || 'jwt';
const tokenDelay = Number(process.argv[5] || 0);
const issuer = `http://127.0.0.1:${port}`;
const RESOURCE = 'http://crm.test/mcp';
const SECRET = 'hg-client-secret';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signing = { ...(await jose.exportJWK(privateKey)), kid: 'as-1', use: 'sig', alg: 'RS256' };
const idp = await jose.generateKeyPair('ES256');

const stats = { success: {}, error: {}, revoked: {} };
const bump = (m, k) => { m[k] = (m[k] || 0) + 1; };

const resourceServer = {
  scope: 'crm.read crm.write',
  audience: RESOURCE,
  accessTokenTTL: ttl,
  accessTokenFormat: format,
  ...(format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
};

const client = (id, auth) => ({
  client_id: id,
  client_secret: SECRET,
  token_endpoint_auth_method: auth,
  grant_types: ['client_credentials', 'refresh_token', 'authorization_code', EXCHANGE],
  redirect_uris: ['http://127.0.0.1/cb'],
  scope: 'openid offline_access crm.read crm.write',
});

const provider = new Provider(issuer, {
  clients: [client('headgate', 'client_secret_basic'), client('headgate-post', 'client_secret_post')],
  jwks: { keys: [signing] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => RESOURCE,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource) => {
        if (resource !== RESOURCE) throw new errors.InvalidTarget();
        return resourceServer;
      },
    },
  },
  scopes: ['openid', 'offline_access', 'crm.read', 'crm.write'],
  rotateRefreshToken: () => true,
  ttl: { AccessToken: ttl, ClientCredentials: ttl, RefreshToken: 3600, Grant: 3600 },
});

// What each revocation request named, by kind (AccessToken, RefreshToken).
// oidc-provider then revokes every token of that grant (RFC 7009 §2.1
// lets a server do so): the kind says what the client asked for.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route === 'revocation') {
    for (const kind of ['AccessToken', 'RefreshToken', 'ClientCredentials']) {
      if (ctx.oidc.entities[kind]) bump(stats.revoked, kind);
    }
  }
});
provider.on('grant.success', (ctx) => bump(stats.success, ctx.oidc.params.grant_type));
provider.on('grant.error', (ctx, err) => bump(stats.error, `${ctx.oidc?.params?.grant_type}:${err.error}`));

// RFC 8693: a subject token from the identity provider → an access token
// for the same user at the resource.
provider.registerGrantType(EXCHANGE, async (ctx) => {
  const { params } = ctx.oidc;
  if (params.subject_token_type !== 'urn:ietf:params:oauth:token-type:jwt') {
    throw new errors.InvalidRequest('unsupported subject_token_type');
  }
  let sub;
  try {
    ({ payload: { sub } } = await jose.jwtVerify(params.subject_token, idp.publicKey, { issuer: 'http://idp.test' }));
  } catch {
    throw new errors.InvalidGrant('subject token invalid');
  }
  const grant = new provider.Grant({ accountId: sub, clientId: ctx.oidc.client.clientId });
  grant.addResourceScope(RESOURCE, 'crm.read');
  const grantId = await grant.save();
  const at = new provider.AccessToken({ accountId: sub, client: ctx.oidc.client, grantId, scope: 'crm.read', gty: 'token_exchange' });
  at.resourceServer = new provider.ResourceServer(RESOURCE, resourceServer);
  const value = await at.save();
  ctx.body = { access_token: value, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: ttl };
}, new Set(['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type']));

async function mint(user) {
  const clientObj = await provider.Client.find('headgate');
  const grant = new provider.Grant({ accountId: user, clientId: 'headgate' });
  grant.addOIDCScope('offline_access');
  grant.addResourceScope(RESOURCE, 'crm.read');
  const grantId = await grant.save();
  const rt = new provider.RefreshToken({
    client: clientObj, accountId: user, grantId, gty: 'authorization_code',
    authTime: Math.floor(Date.now() / 1000), scope: 'offline_access crm.read', resource: RESOURCE,
  });
  const refresh_token = await rt.save();
  const subject_token = await new jose.SignJWT({ sub: user })
    .setProtectedHeader({ alg: 'ES256' }).setIssuer('http://idp.test').setIssuedAt().setExpirationTime('1h')
    .sign(idp.privateKey);
  return { refresh_token, subject_token };
}

const app = provider.callback();
http.createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/test/mint') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(await mint(url.searchParams.get('user'))));
    return;
  }
  if (url.pathname === '/test/stats') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify(stats));
    return;
  }
  if (tokenDelay > 0 && url.pathname === '/token') {
    setTimeout(() => app(req, res), tokenDelay);
    return;
  }
  app(req, res);
}).listen(port, '127.0.0.1', () => console.log(`auth server on ${issuer}`));
