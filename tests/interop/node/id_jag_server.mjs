// An enterprise IdP and an MCP server's authorization server for the MCP
// authorization extension "enterprise-managed authorization" (ID-JAG), on
// loopback, signing and verifying with `jose`:
//   node id_jag_server.mjs PORT
// - the IdP at /idp: POST /idp/token, RFC 8693 token exchange of an ID
//   token (client `headgate-idp`, secret `idp-secret`, client_secret_basic)
//   for an Identity Assertion JWT (typ `oauth-id-jag+jwt`) naming the
//   authorization server as its audience; the user `blocked` is refused
//   (invalid_grant);
// - the authorization server at /as: POST /as/token, the RFC 7523
//   jwt-bearer grant with that assertion (client `headgate-crm`, secret
//   `crm-secret`; `client_id` in the body as the MCP SDK's server requires)
//   → an RS256 JWT access token for the resource, keys at /as/jwks;
// - test-only: POST /test/id_token?user=U (an ID token from the IdP),
//   GET /test/stats (every grant's parameters, by endpoint).
import http from 'node:http';
import * as jose from 'jose';

const port = Number(process.argv[2]);
const base = `http://127.0.0.1:${port}`;
const IDP = `${base}/idp`;
const AS = `${base}/as`;
const RESOURCE = 'http://crm.test/mcp';
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const JAG_TYP = 'oauth-id-jag+jwt';

const idpKey = await jose.generateKeyPair('ES256');
const asKey = await jose.generateKeyPair('RS256', { extractable: true });
const asJwk = { ...(await jose.exportJWK(asKey.publicKey)), kid: 'as-1', alg: 'RS256', use: 'sig' };
const stats = { idp: [], as: [] };

const send = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};
const refuse = (res, error, status = 400) => send(res, status, { error });

function basic(req, id, secret) {
  const h = req.headers.authorization || '';
  if (!h.startsWith('Basic ')) return false;
  const [user, pass] = Buffer.from(h.slice(6), 'base64').toString().split(':').map(decodeURIComponent);
  return user === id && pass === secret;
}

async function form(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return Object.fromEntries(new URLSearchParams(body));
}

async function idpToken(req, res) {
  const p = await form(req);
  stats.idp.push(p);
  if (!basic(req, 'headgate-idp', 'idp-secret')) return refuse(res, 'invalid_client', 401);
  if (p.grant_type !== EXCHANGE || p.requested_token_type !== ID_JAG || p.subject_token_type !== ID_TOKEN) {
    return refuse(res, 'invalid_request');
  }
  if (p.audience !== AS || p.resource !== RESOURCE) return refuse(res, 'invalid_target');
  let sub;
  try {
    ({ payload: { sub } } = await jose.jwtVerify(p.subject_token, idpKey.publicKey, { issuer: IDP, audience: 'headgate' }));
  } catch {
    return refuse(res, 'invalid_grant');
  }
  if (sub === 'blocked') return refuse(res, 'invalid_grant');
  const jag = await new jose.SignJWT({ client_id: 'headgate-crm', resource: p.resource, scope: p.scope })
    .setProtectedHeader({ alg: 'ES256', typ: JAG_TYP })
    .setIssuer(IDP).setSubject(sub).setAudience(AS).setJti(crypto.randomUUID())
    .setIssuedAt().setExpirationTime('5m')
    .sign(idpKey.privateKey);
  send(res, 200, { access_token: jag, issued_token_type: ID_JAG, token_type: 'N_A', expires_in: 300 });
}

async function asToken(req, res) {
  const p = await form(req);
  stats.as.push(p);
  if (!basic(req, 'headgate-crm', 'crm-secret') || p.client_id !== 'headgate-crm') {
    return refuse(res, 'invalid_client', 401);
  }
  if (p.grant_type !== BEARER) return refuse(res, 'unsupported_grant_type');
  let claims;
  try {
    ({ payload: claims } = await jose.jwtVerify(p.assertion, idpKey.publicKey, { issuer: IDP, audience: AS, typ: JAG_TYP }));
  } catch {
    return refuse(res, 'invalid_grant');
  }
  if (claims.client_id !== p.client_id || (p.resource && p.resource !== claims.resource)) {
    return refuse(res, 'invalid_grant');
  }
  const at = await new jose.SignJWT({ client_id: p.client_id, scope: claims.scope })
    .setProtectedHeader({ alg: 'RS256', kid: 'as-1' })
    .setIssuer(AS).setSubject(claims.sub).setAudience(claims.resource)
    .setIssuedAt().setExpirationTime('5m')
    .sign(asKey.privateKey);
  send(res, 200, { access_token: at, token_type: 'Bearer', expires_in: 300, scope: claims.scope });
}

http.createServer(async (req, res) => {
  const url = new URL(req.url, base);
  try {
    if (req.method === 'POST' && url.pathname === '/idp/token') return await idpToken(req, res);
    if (req.method === 'POST' && url.pathname === '/as/token') return await asToken(req, res);
    if (url.pathname === '/as/jwks') return send(res, 200, { keys: [asJwk] });
    if (url.pathname === '/test/stats') return send(res, 200, stats);
    if (url.pathname === '/test/id_token') {
      const idToken = await new jose.SignJWT({})
        .setProtectedHeader({ alg: 'ES256' })
        .setIssuer(IDP).setSubject(url.searchParams.get('user')).setAudience('headgate')
        .setIssuedAt().setExpirationTime('1h')
        .sign(idpKey.privateKey);
      return send(res, 200, { id_token: idToken });
    }
    send(res, 404, { error: 'not_found' });
  } catch (e) {
    send(res, 500, { error: 'server_error' });
  }
}).listen(port, '127.0.0.1', () => console.log(`IdP and AS on ${base}`));
