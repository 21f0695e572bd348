// A Push Kit backend as Huawei's Java server demo is built: a PS256 JWT signed from the
// service-account key file (JDK only), HttpsURLConnection with the JVM's trust store,
// `application/json; charset=UTF-8`, `Authorization: Bearer`, `push-type`. It sends one
// notification and revokes it, and prints each answer's business code on its own line.
// Usage: java PushKitClient.java BASE_URL KEY_FILE CLIENT_ID TOKEN

import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.spec.MGF1ParameterSpec;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.PSSParameterSpec;
import java.util.Base64;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import javax.net.ssl.HttpsURLConnection;

public class PushKitClient {
    /** A string field of the flat key-file JSON (escapes: only \n and \" occur). */
    static String field(String json, String name) {
        int at = json.indexOf("\"" + name + "\"");
        if (at < 0) throw new IllegalArgumentException("no " + name + " in the key file");
        int start = json.indexOf('"', json.indexOf(':', at + name.length() + 2)) + 1;
        StringBuilder out = new StringBuilder();
        for (int i = start; json.charAt(i) != '"'; i++) {
            char c = json.charAt(i);
            if (c == '\\') {
                char next = json.charAt(++i);
                out.append(next == 'n' ? '\n' : next);
            } else {
                out.append(c);
            }
        }
        return out.toString();
    }

    static String b64(byte[] bytes) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(bytes);
    }

    static String jwt(String keyFile) throws Exception {
        String json = Files.readString(Path.of(keyFile));
        String pem = field(json, "private_key")
            .replace("-----BEGIN PRIVATE KEY-----", "")
            .replace("-----END PRIVATE KEY-----", "")
            .replace("\n", "");
        PrivateKey key = KeyFactory.getInstance("RSA")
            .generatePrivate(new PKCS8EncodedKeySpec(Base64.getDecoder().decode(pem)));
        long now = System.currentTimeMillis() / 1000;
        String header = "{\"kid\":\"" + field(json, "key_id") + "\",\"typ\":\"JWT\",\"alg\":\"PS256\"}";
        String claims = "{\"iss\":\"" + field(json, "sub_account")
            + "\",\"aud\":\"https://oauth-login.cloud.huawei.com/oauth2/v3/token\",\"iat\":" + now
            + ",\"exp\":" + (now + 3600) + "}";
        String signingInput = b64(header.getBytes(StandardCharsets.UTF_8)) + "."
            + b64(claims.getBytes(StandardCharsets.UTF_8));
        Signature pss = Signature.getInstance("RSASSA-PSS");
        pss.setParameter(new PSSParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, 32, 1));
        pss.initSign(key);
        pss.update(signingInput.getBytes(StandardCharsets.UTF_8));
        return signingInput + "." + b64(pss.sign());
    }

    static String post(String url, String jwt, int pushType, String body) throws Exception {
        HttpsURLConnection c = (HttpsURLConnection) new URL(url).openConnection();
        c.setRequestMethod("POST");
        c.setDoOutput(true);
        c.setRequestProperty("Content-Type", "application/json; charset=UTF-8");
        c.setRequestProperty("Authorization", "Bearer " + jwt);
        c.setRequestProperty("push-type", Integer.toString(pushType));
        try (OutputStream out = c.getOutputStream()) {
            out.write(body.getBytes(StandardCharsets.UTF_8));
        }
        int status = c.getResponseCode();
        InputStream in = status < 400 ? c.getInputStream() : c.getErrorStream();
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        in.transferTo(buf);
        String answer = buf.toString(StandardCharsets.UTF_8);
        Matcher m = Pattern.compile("\"code\"\\s*:\\s*\"(\\d+)\"").matcher(answer);
        return status + " " + (m.find() ? m.group(1) : answer);
    }

    public static void main(String[] args) throws Exception {
        String base = args[0], keyFile = args[1], clientId = args[2], token = args[3];
        String json = Files.readString(Path.of(keyFile));
        String jwt = jwt(keyFile);
        String send = base + "/v3/" + field(json, "project_id") + "/messages:send";
        System.out.println(post(send, jwt, 0,
            "{\"payload\":{\"notification\":{\"category\":\"IM\",\"title\":\"from Java\",\"body\":\"b\","
            + "\"notifyId\":6161,\"clickAction\":{\"actionType\":0}}},\"target\":{\"token\":[\"" + token + "\"]}}"));
        System.out.println(post(base + "/v1/" + clientId + "/messages:revoke", jwt, 0,
            "{\"notifyId\":6161,\"token\":[\"" + token + "\"]}"));
    }
}
