import org.apache.kafka.common.security.ssl.SslPrincipalMapper;

/** Prints the principal Kafka's own mapper makes of each certificate name, or "refused".
 *  Usage: java -cp "kafka/lib/*" MapPrincipal.java RULES NAME... */
public class MapPrincipal {
    public static void main(String[] args) {
        SslPrincipalMapper mapper = SslPrincipalMapper.fromRules(args[0]);
        for (int i = 1; i < args.length; i++) {
            try {
                System.out.println(mapper.getName(args[i]));
            } catch (Exception e) {
                System.out.println("refused");
            }
        }
    }
}
